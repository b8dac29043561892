"""Pieces shared by the kernels: the backward that scales a gradient computed in the forward."""
