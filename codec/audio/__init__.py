"""Audio modality: the speech VQ-VAE (`model`), its spectral helpers (`spectral`) and data (`data`)."""
