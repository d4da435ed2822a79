"""The model: the sequence classifier (recurrent layer + head on the last layer of h_n), the hand-stepped
and from-scratch cells, and the tensor shapes of a forward pass."""
