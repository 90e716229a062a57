"""PortraitSR: command-line entry point shared by the model, training and service packages."""
