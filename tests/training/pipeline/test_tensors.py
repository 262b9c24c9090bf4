"""The one padding function: masks from lengths, left for generation, right for scoring."""

from training.pipeline.tensors import pad_sequences


def test_left_padding_masks_from_lengths_even_when_pad_is_a_real_token():
    ids, mask = pad_sequences([[5, 7, 7], [7]], pad_id=7, side="left")
    assert ids.tolist() == [[5, 7, 7], [7, 7, 7]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_right_padding_and_empty_rows():
    ids, mask = pad_sequences([[1, 2], [], [3]], pad_id=0)
    assert ids.tolist() == [[1, 2], [0, 0], [3, 0]]
    assert mask.tolist() == [[1, 1], [0, 0], [1, 0]]
    ids, mask = pad_sequences([], pad_id=0)
    assert ids.shape == (0, 0) and mask.shape == (0, 0)
