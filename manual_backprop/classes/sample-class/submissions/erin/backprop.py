"""erin's network: a loop that never ends."""


def loss_and_grads(params, X, Y):
    loss = 0.0
    while True:
        loss += 1.0
