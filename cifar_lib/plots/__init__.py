"""Figures for the lessons, one module per lesson: ``training`` (01), ``speed`` (02),
``evaluation`` (03), ``photos`` (04); ``common`` holds what they share. Every function returns a
``matplotlib.figure.Figure``; ``save_figure`` writes one into a run folder. The names are
gathered here so that a lesson imports them from one place.
"""
from .common import save_figure
from .evaluation import (plot_confusion_matrix, plot_corruption_examples,
                         plot_corruption_heatmap, plot_grad_cam, plot_mistakes, plot_per_class,
                         plot_reliability_before_after)
from .photos import plot_open_set, plot_prediction_grid, plot_preprocessing, plot_topk
from .speed import plot_throughput, plot_training_throughput
from .training import (LiveTrainingCurves, image_grid, learning_rates,
                       plot_ablation_differences, plot_augmented_batch, plot_class_counts,
                       plot_label_smoothing, plot_learning_rates, plot_training_curves,
                       plot_tta_views, plot_whitening)

__all__ = ["save_figure", "plot_confusion_matrix", "plot_corruption_examples",
           "plot_corruption_heatmap", "plot_grad_cam", "plot_mistakes", "plot_per_class",
           "plot_reliability_before_after", "plot_open_set", "plot_prediction_grid", "plot_preprocessing",
           "plot_topk", "plot_throughput", "plot_training_throughput",
           "LiveTrainingCurves", "image_grid", "learning_rates", "plot_ablation_differences",
           "plot_augmented_batch", "plot_class_counts", "plot_label_smoothing",
           "plot_learning_rates", "plot_training_curves", "plot_tta_views", "plot_whitening"]
