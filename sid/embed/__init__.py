"""Item encoders per modality, their fusion and FORGE's contrastive head."""

from sid.embed.collaborative import item_vectors_from_counts, truncated_svd, weight_counts
from sid.embed.contrastive import ContrastiveHead, similarity_gap, train_contrastive_head
from sid.embed.encoder import TextEncoder, load_text_encoder
from sid.embed.fusion import PcaModel, fit_pca, fuse, l2_normalize, projection_matrix
from sid.embed.image import ImageEncoder, check_image_vectors, load_image_encoder
from sid.embed.text import clean_text, render_item_text, template_fields

__all__ = [
    "ContrastiveHead",
    "ImageEncoder",
    "PcaModel",
    "TextEncoder",
    "check_image_vectors",
    "clean_text",
    "fit_pca",
    "fuse",
    "item_vectors_from_counts",
    "l2_normalize",
    "load_image_encoder",
    "load_text_encoder",
    "projection_matrix",
    "render_item_text",
    "similarity_gap",
    "template_fields",
    "train_contrastive_head",
    "truncated_svd",
    "weight_counts",
]
