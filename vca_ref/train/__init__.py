"""Model-independent training machinery: optimisers, LR schedule, clipping, EMA."""
from vca_ref.train.clip import clip_grad_norm, grad_norm
from vca_ref.train.ema import EMA
from vca_ref.train.optim import SGD, AdamW, Optimizer, default_no_decay
from vca_ref.train.schedule import CosineWarmupSchedule, cosine_warmup_lr
