"""The scratch stage: the shrunk architecture trained from random weights, the control that says
whether pruning earned its keep over simply training the small network (Liu et al., "Rethinking
the Value of Network Pruning", 2019)."""
