"""Request and response types of the API (pydantic v2).

The thirty inputs are the measurements of the Wisconsin Diagnostic Breast Cancer data
(scikit-learn's names, spaces replaced by underscores). Validation is strict: a string is
never coerced to a number, booleans are refused, NaN and infinities are refused, unknown
fields are refused (a misspelt field must not silently fall back to nothing).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Measurement = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PatientFeatures(BaseModel):
    """One patient's FNA measurements: one record to classify."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    mean_radius: Measurement = Field(description="mean radius")
    mean_texture: Measurement = Field(description="mean texture")
    mean_perimeter: Measurement = Field(description="mean perimeter")
    mean_area: Measurement = Field(description="mean area")
    mean_smoothness: Measurement = Field(description="mean smoothness")
    mean_compactness: Measurement = Field(description="mean compactness")
    mean_concavity: Measurement = Field(description="mean concavity")
    mean_concave_points: Measurement = Field(description="mean concave points")
    mean_symmetry: Measurement = Field(description="mean symmetry")
    mean_fractal_dimension: Measurement = Field(description="mean fractal dimension")
    radius_error: Measurement = Field(description="radius error")
    texture_error: Measurement = Field(description="texture error")
    perimeter_error: Measurement = Field(description="perimeter error")
    area_error: Measurement = Field(description="area error")
    smoothness_error: Measurement = Field(description="smoothness error")
    compactness_error: Measurement = Field(description="compactness error")
    concavity_error: Measurement = Field(description="concavity error")
    concave_points_error: Measurement = Field(description="concave points error")
    symmetry_error: Measurement = Field(description="symmetry error")
    fractal_dimension_error: Measurement = Field(description="fractal dimension error")
    worst_radius: Measurement = Field(description="worst radius")
    worst_texture: Measurement = Field(description="worst texture")
    worst_perimeter: Measurement = Field(description="worst perimeter")
    worst_area: Measurement = Field(description="worst area")
    worst_smoothness: Measurement = Field(description="worst smoothness")
    worst_compactness: Measurement = Field(description="worst compactness")
    worst_concavity: Measurement = Field(description="worst concavity")
    worst_concave_points: Measurement = Field(description="worst concave points")
    worst_symmetry: Measurement = Field(description="worst symmetry")
    worst_fractal_dimension: Measurement = Field(description="worst fractal dimension")


FEATURES: tuple[str, ...] = tuple(PatientFeatures.model_fields)


class BatchRequest(BaseModel):
    """Several records classified in one request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    records: list[PatientFeatures] = Field(description="records to classify, in order")


class Probabilities(BaseModel):
    malignant: float
    benign: float


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    prediction: str = Field(description="predicted class: malignant or benign")
    probability: float = Field(description="probability of the predicted class")
    probabilities: Probabilities
    warnings: list[str] = Field(description="fields outside the observed training range (still accepted)")


class SinglePrediction(Prediction):
    model: ModelRef


class BatchPrediction(BaseModel):
    model: ModelRef
    predictions: list[Prediction]


class ErrorItem(BaseModel):
    field: str = Field(description="the field at fault, e.g. mean_radius or records[3].mean_radius")
    loc: list[str | int]
    type: str
    msg: str


class ErrorResponse(BaseModel):
    detail: list[ErrorItem]
