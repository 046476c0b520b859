"""Model-independent training machinery: optimisers, LR schedule, clipping, EMA."""
from .clip import clip_grad_norm, grad_norm
from .ema import EMA
from .optim import SGD, AdamW, Optimizer, default_no_decay
from .schedule import CosineWarmupSchedule, cosine_warmup_lr
