"""Shared tf.data mechanics of the loaders: scaling, shuffling, augmentation."""

from __future__ import annotations

import numpy as np


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, received {batch_size!r}.")
    return batch_size


def augment_fn(pad: int = 2):
    """Random horizontal flip and translation by up to ``pad`` pixels."""
    import tensorflow as tf

    def augment(image, label):
        shape = tf.shape(image)
        image = tf.image.random_flip_left_right(image)
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        image = tf.image.random_crop(padded, shape)
        return image, label

    return augment


def make_pipeline(images, labels, batch_size, shuffle, augment, seed, drop_remainder):
    """``tf.data`` pipeline from uint8 images ``(N, H, W, C)`` and int labels."""
    import tensorflow as tf

    batch_size = _check_batch_size(batch_size)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(min(len(images), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE
    )
    if augment:
        ds = ds.map(augment_fn(), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def to_numpy(dataset):
    """Concatenates a batched dataset into ``(images, labels)`` numpy arrays."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)
