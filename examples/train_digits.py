"""Train a small BN-Inception network on scikit-learn's 8x8 digits with the
bnkernels API directly: what ``python -m bnkernels train`` does, without the
reporting. Needs scikit-learn.

    python examples/train_digits.py
"""
import numpy as np

from bnkernels.nn import inception, layers, optim
from bnkernels.nn.train import evaluate, load_digits

x_train, y_train, x_test, y_test = load_digits(rng=0)
model = inception.small_inception(num_classes=10, in_channels=1, width=16, rng=0)
model.summary(x_train[:64].shape)

loss_fn = layers.SoftmaxCrossEntropy()
sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(1)
for epoch in range(1, 6):
    order = rng.permutation(len(y_train))
    for start in range(0, len(order) - 63, 64):
        batch = order[start:start + 64]
        sgd.zero_grad()
        loss = loss_fn.forward(model.forward(x_train[batch]), y_train[batch])
        # fills every parameter's grad; no dL/dx of the images is needed
        model.backward(loss_fn.backward(), input_grad=False)
        sgd.step()
    test_loss, test_accuracy = evaluate(model, loss_fn, x_test, y_test)
    print(f"epoch {epoch}: last batch loss {loss:.4f}, test accuracy {test_accuracy:.3f}")
