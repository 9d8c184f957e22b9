"""Segmentation head: a UNETR-style decoder on the pretrained ViT encoder.

    config.py    FinetuneConfig (``medmae finetune``) and its sections
    classmap.py  label ids -> training classes (select and merge), and back
    model.py     SegmentationViT: ViTEncoder3D + MONAI UNETR blocks, any power-of-two patch
    init.py      encoder from an export / checkpoint / run folder / scratch, with its LoadReport
    optim.py     AdamW groups: layer-wise LR decay, frozen encoder, decoder-only warm-up
    data.py      labelled crops (label-fraction subset) and validation cases
    metrics.py   Dice and HD95 per class, empty ground truth counted explicitly
    infer.py     sliding-window prediction of a whole volume
    engine.py    the fine-tuning loop (MLflow, checkpoints, exact resume, DDP, bf16)
    bundle.py    the trained model folder that ``medmae segment`` reads
    predict.py   ``medmae segment``: scans -> label maps on the source grid + volumes CSV
    corrupt.py   seeded corruptions for the robustness evaluation
    evaluate.py  ``medmae segment evaluate``: label counts x corruptions, pretrained vs scratch
"""
