"""Fine-tuned int8 (pruning, quantization-aware training) that never silently replaces a better file.

A fine-tune can lose: a learning rate too high for the already-trained weights, a
granularity the folded kernels cannot hold, a pruning target the model cannot meet. So the
fine-tuned int8 file and the post-training one are scored on the same seeded training images
that the granularity choice measures on (never the test split, which the accuracy-drop report
keeps for itself), and model_int8.tflite is the one that scores higher; the other stays beside
it under its own name. Pruning trades accuracy for sparsity the user asked for, so a pruned
file may score up to `allowance_pp` points lower and still ship (ConvertConfig.prune_allowance_pp).
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.convert import granularity as weight_granularity
from edgeship.run_dir import ArtifactKind

POST_TRAINING = "post-training"
FINE_TUNED = "fine-tuned"
# Where the file that was not delivered is kept.
KEPT_NAMES = {POST_TRAINING: ArtifactKind.PTQ_INT8_TFLITE.file_name,
              FINE_TUNED: ArtifactKind.FINETUNED_INT8_TFLITE.file_name}
KEPT_KEYS = {POST_TRAINING: "ptq_int8_tflite", FINE_TUNED: "finetuned_int8_tflite"}


@dataclass(frozen=True)
class Delivery:
    """Which int8 file became model_int8.tflite, and the measurement that decided it.

    Attributes:
        delivered: "fine-tuned" or "post-training".
        fine_tune: what the fine-tuned file went through, e.g. "QAT 1 epoch" or "pruned 0.75".
        selection_images: seeded training images both files were scored on.
        selection_seed: the seed of that sample.
        accuracy: "post-training"/"fine-tuned" -> top-1 accuracy on those images.
        allowance_pp: how many points below the post-training file the fine-tuned one may score.
    """

    delivered: str
    fine_tune: str
    selection_images: int
    selection_seed: int
    accuracy: dict[str, float]
    allowance_pp: float = 0.0

    @property
    def kept(self) -> str:
        return POST_TRAINING if self.delivered == FINE_TUNED else FINE_TUNED

    @property
    def kept_name(self) -> str:
        return KEPT_NAMES[self.kept]

    @property
    def kept_key(self) -> str:
        return KEPT_KEYS[self.kept]

    def reason(self) -> str:
        fine, post = self.accuracy[FINE_TUNED], self.accuracy[POST_TRAINING]
        scores = (f"the {self.fine_tune} int8 model scores {fine:.1%} on {self.selection_images} "
                  f"training images, the post-training int8 model {post:.1%}")
        if self.allowance_pp:
            scores += f" (a pruned file may score up to {self.allowance_pp:g} points lower)"
        if self.delivered == FINE_TUNED:
            return f"{scores}: model_int8.tflite is the fine-tuned file"
        return (f"{scores}: model_int8.tflite is the post-training file; the fine-tuned one "
                f"is kept as {self.kept_name}")

    def to_dict(self) -> dict:
        return {"delivered": self.delivered, "fine_tune": self.fine_tune,
                "kept": {"file": self.kept_name, "made_by": self.kept},
                "selection_images": self.selection_images,
                "selection_seed": self.selection_seed,
                "accuracy": dict(self.accuracy), "allowance_pp": self.allowance_pp,
                "reason": self.reason()}


def choose_delivery(post_training: bytes, fine_tuned: bytes, fine_tune: str,
                    train_images: np.ndarray, train_labels: np.ndarray, seed: int,
                    allowance_pp: float = 0.0) -> Delivery:
    """Score both int8 files on the selection images; the fine-tuned one wins ties.

    Args:
        post_training: the post-training int8 .tflite.
        fine_tuned: the pruned and/or QAT int8 .tflite.
        fine_tune: how the fine-tuned file was made, for the report.
        train_images: the training split with the recorded preprocessing.
        train_labels: its integer labels.
        seed: seeds the selection sample (the same images the granularity choice uses).
        allowance_pp: points the fine-tuned file may score below the post-training one.

    Returns:
        The Delivery; `delivered` names the file to ship as model_int8.tflite.
    """
    from edgeship.convert.report import predict

    index = weight_granularity.selection_indices(len(train_images), seed)
    images, labels = train_images[index], np.asarray(train_labels)[index]
    accuracy = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-delivery-") as folder:
        for made_by, data in ((POST_TRAINING, post_training), (FINE_TUNED, fine_tuned)):
            path = Path(folder) / f"{made_by}.tflite"
            path.write_bytes(data)
            top1 = np.argmax(predict(path, images), axis=1)
            accuracy[made_by] = round(float(np.mean(top1 == labels)), 6)
    wins = accuracy[FINE_TUNED] * 100 + allowance_pp >= accuracy[POST_TRAINING] * 100 - 1e-9
    return Delivery(delivered=FINE_TUNED if wins else POST_TRAINING, fine_tune=fine_tune,
                    selection_images=len(images), selection_seed=seed, accuracy=accuracy,
                    allowance_pp=allowance_pp)


def describe_fine_tune(qat_epochs: int, prune_sparsity: float | None,
                       prune_structure: str | None) -> str:
    """"pruned 0.75 + QAT 1 epoch" and the like."""
    parts = []
    if prune_sparsity is not None or prune_structure:
        target = prune_structure or f"{prune_sparsity:g}"
        parts.append(f"pruned {target}")
    if qat_epochs:
        parts.append(f"QAT {qat_epochs} epoch{'s' if qat_epochs != 1 else ''}")
    return " + ".join(parts)
