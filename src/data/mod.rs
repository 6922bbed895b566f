//! MNIST-family datasets (being written).
