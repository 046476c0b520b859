"""Diffusion (DDPM, DDIM) and flow matching (SiT) around any ``model(x, t, y) -> output``."""
from vca_ref.diffusion.cfg import cfg_combine, drop_labels, guided_model
from vca_ref.diffusion.ddim import ddim_sample_loop
from vca_ref.diffusion.ddpm import GaussianDiffusion, gaussian_noise, output_mse_loss, split_output
from vca_ref.diffusion.flow import (euler_sample, flow_interpolate, flow_matching_loss, flow_sample,
                   flow_training_inputs, heun_sample)
from vca_ref.diffusion.schedules import (cosine_beta_schedule, get_beta_schedule, linear_beta_schedule,
                        respaced_betas, space_timesteps)
