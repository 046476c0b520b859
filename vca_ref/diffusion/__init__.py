"""Diffusion (DDPM, DDIM) and flow matching (SiT) around any ``model(x, t, y) -> output``."""
from .cfg import cfg_combine, drop_labels, guided_model
from .ddim import ddim_sample_loop
from .ddpm import GaussianDiffusion, gaussian_noise, output_mse_loss, split_output
from .flow import (euler_sample, flow_interpolate, flow_matching_loss, flow_sample,
                   flow_training_inputs, heun_sample)
from .schedules import (cosine_beta_schedule, get_beta_schedule, linear_beta_schedule,
                        respaced_betas, space_timesteps)
