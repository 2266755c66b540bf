"""Values shared by every folder, each defined once."""

# Segmentation: the mask value left out of the loss and of every metric (PASCAL VOC's and
# DeepLab's "void" label), and the value evaluation pads masks with. gin's IGNORE_LABEL
# (configs/base.gin) binds the task's; this is its default everywhere.
IGNORE_LABEL = 255
