"""The networks MXNet's Gluon model zoo has, by dlmark display name: a module without mxnet, so
the driver refuses a model the mxnet runtime cannot run before any job starts."""

#: dlmark display name -> Gluon model zoo name: the seed's 19 networks (and two more the zoo has).
GLUON_NAMES = {
    "AlexNet": "alexnet",
    **{f"DenseNet-{d}": f"densenet{d}" for d in (121, 161, 169, 201)},
    **{f"ResNet-v1-{d}": f"resnet{d}_v1" for d in (18, 34, 50, 101, 152)},
    **{f"ResNet-v2-{d}": f"resnet{d}_v2" for d in (18, 34, 50)},
    "SqueezeNet-1.0": "squeezenet1.0", "SqueezeNet-1.1": "squeezenet1.1",
    **{f"VGG-{d}": f"vgg{d}" for d in (11, 13, 16, 19)},
    "Inception-v3": "inceptionv3", "MobileNet-v2": "mobilenetv2_1.0",
}
