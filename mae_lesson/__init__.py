"""mae_lesson: Masked Autoencoders (He et al., CVPR 2022), built one concept per module.

The lesson core, in lesson order: patch_embed, pos_embed, masking, transformer, model, loss, config,
loader, optim, engine, evaluate, classifier. Above it the run layer (run/, pretrain, finetune,
checkpoint, ...) and the lesson's helpers (data, viz, exercises, ...). docs/architecture.md maps them.
"""

from . import checkpoint  # noqa: F401 - gives MAE save_checkpoint, load_checkpoint and from_checkpoint
from .bundled import bundled_config_names
from .config import Config
from .model import MAE
from .pretrained import DATA_DIR, available_pretrained, load_pretrained
from .utils import get_device, quick_mode, set_seed

__all__ = ["MAE", "Config", "bundled_config_names", "set_seed", "get_device", "quick_mode", "load_pretrained", "available_pretrained", "DATA_DIR"]
__version__ = "0.1.0"
