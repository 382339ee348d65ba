"""Request and response types of the API (pydantic v2).

The thirty inputs are the measurements of the Wisconsin Diagnostic Breast Cancer data
(scikit-learn's names, spaces replaced by underscores). Validation is strict: a string is
never coerced to a number, booleans are refused, NaN and infinities are refused, unknown
fields are refused (a misspelt field must not silently fall back to nothing).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from typing_extensions import TypedDict

Measurement = Annotated[float, Field(strict=True, allow_inf_nan=False)]


# A TypedDict that pydantic validates (the same rules as a model): a batch of a thousand
# records validates into plain dicts, which costs a third less than building a thousand
# model instances and leaves the values one itemgetter away from the model's matrix.
class PatientFeatures(TypedDict):
    """One patient's FNA measurements: one record to classify."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # type: ignore[misc]

    mean_radius: Annotated[Measurement, Field(description="mean radius")]
    mean_texture: Annotated[Measurement, Field(description="mean texture")]
    mean_perimeter: Annotated[Measurement, Field(description="mean perimeter")]
    mean_area: Annotated[Measurement, Field(description="mean area")]
    mean_smoothness: Annotated[Measurement, Field(description="mean smoothness")]
    mean_compactness: Annotated[Measurement, Field(description="mean compactness")]
    mean_concavity: Annotated[Measurement, Field(description="mean concavity")]
    mean_concave_points: Annotated[Measurement, Field(description="mean concave points")]
    mean_symmetry: Annotated[Measurement, Field(description="mean symmetry")]
    mean_fractal_dimension: Annotated[Measurement, Field(description="mean fractal dimension")]
    radius_error: Annotated[Measurement, Field(description="radius error")]
    texture_error: Annotated[Measurement, Field(description="texture error")]
    perimeter_error: Annotated[Measurement, Field(description="perimeter error")]
    area_error: Annotated[Measurement, Field(description="area error")]
    smoothness_error: Annotated[Measurement, Field(description="smoothness error")]
    compactness_error: Annotated[Measurement, Field(description="compactness error")]
    concavity_error: Annotated[Measurement, Field(description="concavity error")]
    concave_points_error: Annotated[Measurement, Field(description="concave points error")]
    symmetry_error: Annotated[Measurement, Field(description="symmetry error")]
    fractal_dimension_error: Annotated[Measurement, Field(description="fractal dimension error")]
    worst_radius: Annotated[Measurement, Field(description="worst radius")]
    worst_texture: Annotated[Measurement, Field(description="worst texture")]
    worst_perimeter: Annotated[Measurement, Field(description="worst perimeter")]
    worst_area: Annotated[Measurement, Field(description="worst area")]
    worst_smoothness: Annotated[Measurement, Field(description="worst smoothness")]
    worst_compactness: Annotated[Measurement, Field(description="worst compactness")]
    worst_concavity: Annotated[Measurement, Field(description="worst concavity")]
    worst_concave_points: Annotated[Measurement, Field(description="worst concave points")]
    worst_symmetry: Annotated[Measurement, Field(description="worst symmetry")]
    worst_fractal_dimension: Annotated[Measurement, Field(description="worst fractal dimension")]


FEATURES: tuple[str, ...] = tuple(PatientFeatures.__annotations__)


class BatchRequest(BaseModel):
    """Several records classified in one request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    records: list[PatientFeatures] = Field(min_length=1, description="records to classify, in order")


def _body_kind(value: Any) -> str:
    """A body with a top-level "records" key is a batch; anything else is judged as one record."""
    return "batch" if isinstance(value, dict) and "records" in value else "record"


# The body of POST /predict: one record or a batch, told apart by the "records" key (so an
# error names the field of the shape that was meant, never both). The tag appears in an
# error's loc after "body"; the API leaves it out of the field it names.
PredictRequest = Annotated[
    Annotated[PatientFeatures, Tag("record")] | Annotated[BatchRequest, Tag("batch")],
    Discriminator(_body_kind),
]
BODY_TAGS = frozenset(("record", "batch"))


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
