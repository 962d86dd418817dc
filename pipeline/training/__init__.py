"""The training engine behind the `train` stage: the loop (`trainer`), the learning-rate and
time-budget schedule (`schedule`), checkpoints and resume (`checkpoints`), DDP and device
choice (`distributed`), validation (`validation`) and the dvclive curves (`live`)."""
