"""Looking inside a ViT as the paper does: attention maps and rollout, mean attention distance, position-embedding
similarity and patch-embedding filters (Dosovitskiy et al. 2020, Sec. 4.5 and App. D.7-D.8).

The maths (capture, rollout, distance, embeddings) needs only torch; plotting needs matplotlib (``vitkit[viz]``).
``vitkit.visualize`` (:mod:`vitkit.viz.draw`) draws them from a checkpoint, as the model's family says;
``draw_position_picture(model, path)`` draws the position picture of a built ViT of any ``pos_embed`` kind.
"""

from vitkit.viz.capture import attention_maps, iter_attention_maps, prepare_model
from vitkit.viz.distance import mean_attention_distance, model_attention_distance, patch_distances
from vitkit.viz.embeddings import (
    filter_components,
    patch_position_embeddings,
    position_similarity,
    relative_bias_maps,
)
from vitkit.viz.kinds import KINDS
from vitkit.viz.positions import draw_position_picture
from vitkit.viz.rollout import attention_rollout, query_attention, rollout_map

__all__ = [
    "KINDS",
    "attention_maps",
    "attention_rollout",
    "draw_position_picture",
    "filter_components",
    "iter_attention_maps",
    "mean_attention_distance",
    "model_attention_distance",
    "patch_distances",
    "patch_position_embeddings",
    "position_similarity",
    "prepare_model",
    "query_attention",
    "relative_bias_maps",
    "rollout_map",
]
