"""The shipped training recipes (YAML, package data): ``vitkit train --config cifar10_vit`` names one, and
``vitkit recipes`` lists them with each one's command, expected result and runtime."""
