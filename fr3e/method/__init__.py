"""The paper's method as pure functions on tensors and lists."""
