"""The service's ``portraitsr`` subcommands: api, worker, serve, upscale, restore, hash-key."""
