"""Models: the built-in networks and the zoos' (torchvision, timm, segmentation_models_pytorch) by
name, with their traversals."""
