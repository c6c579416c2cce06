"""The pictures ``vitkit visualize --kind`` draws; which apply to a model is its family's to say
(:attr:`vitkit.families.Family.views`)."""

KINDS = ("rollout", "heads", "distance", "posembed", "filters", "reconstruction")
NEEDS_IMAGES = ("rollout", "heads", "distance", "reconstruction")
