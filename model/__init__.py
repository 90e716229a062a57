"""The PortraitSR network (PyTorch): Restormer-style backbone with the SSP, ATP and HPF priors."""
