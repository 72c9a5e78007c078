class ToPILImage:
    """Imported by mmpose.visualization.simcc_vis; only SimCC heatmap drawing would call it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision is a stub here (no CPU torchvision for torch 2.13.0+cpu)")
