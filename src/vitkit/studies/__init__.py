"""The paper's claims as commands: each study trains what it needs under a stated budget and writes a table and
pictures (``vitkit study NAME``; docs/studies.md).

* ``data-scale``: a ViT, a ResNet and a hybrid trained on 2-100% of CIFAR-10 at equal steps (paper Fig. 3/4);
* ``pos-embed``: the position-embedding kinds of the paper's Table 8 on the same ViT, with their pictures;
* ``inductive-bias``: how shifting the input by 1-8 pixels moves each model's answer, and accuracy over steps.

Studies are plug-ins: the built-in ones are the modules of this package that define ``STUDY`` (a
:class:`Study`), so a new study is a new module here; one from outside vitkit is added with
:func:`register_study`. :func:`run_study` runs any of them.
"""

from __future__ import annotations

from vitkit.studies.base import RunRecord, RunSpec, Study, StudyContext
from vitkit.studies.registry import get_study, list_studies, register_study, unregister_study
from vitkit.studies.runner import StudyResult, run_study

__all__ = [
    "RunRecord",
    "RunSpec",
    "Study",
    "StudyContext",
    "StudyResult",
    "get_study",
    "list_studies",
    "register_study",
    "run_study",
    "unregister_study",
]
