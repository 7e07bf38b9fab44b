"""What a network is made of: each layer's output shape, parameters and FLOPs, with totals.

    summary = summarize(Architecture())            # or summarize("runs/x/model.npz")
    print(summary.total_parameters, summary.training_flops)

Every figure comes from Architecture.layer_costs, from the layer units that know the shapes.
"""
import os
from dataclasses import asdict, dataclass

from cnnfruit.nn.architecture import Architecture


@dataclass
class Summary:
    arch: Architecture
    layers: list  # Architecture.LayerCost per layer, input to softmax

    @property
    def total_parameters(self):
        return sum(layer.parameters for layer in self.layers)

    @property
    def forward_flops(self):
        """Per image: one forward pass (what predict and eval compute)."""
        return sum(layer.forward_flops for layer in self.layers)

    @property
    def backward_flops(self):
        """Per image: the backward pass of a training step."""
        return sum(layer.backward_flops for layer in self.layers)

    @property
    def training_flops(self):
        return self.forward_flops + self.backward_flops

    @property
    def input_gradient_flops(self):
        """Per image, on top of a backward pass: the input gradient of the lowest layer with
        parameters (explain's saliency map), as many multiply-adds as its forward pass."""
        return next(layer.forward_flops for layer in self.layers if layer.parameters)

    def to_dict(self):
        return {
            "architecture": self.arch.to_dict(),
            "layers": [{**asdict(layer), "output_shape": list(layer.output_shape)} for layer in self.layers],
            "total_parameters": self.total_parameters,
            "forward_flops": self.forward_flops,
            "backward_flops": self.backward_flops,
            "training_flops": self.training_flops,
            "input_gradient_flops": self.input_gradient_flops,
            "parameter_bytes_float32": 4 * self.total_parameters,
        }


def summarize(network):
    """The Summary of an Architecture, or of the network in a checkpoint file (model.npz)."""
    if isinstance(network, (str, os.PathLike)):
        from cnnfruit import checkpoint

        network = checkpoint.load(network).arch
    return Summary(network, network.layer_costs())
