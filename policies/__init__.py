"""policies: diffusion-policy training and closed-loop evaluation on depth (arrives with issue 5)."""
