"""Test-time multi-clip evaluation: averaged scores, one video file, and accuracy over labelled files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmsdk.adapters.video.evaluation import average_clip_scores, evaluate_videos, predict_video
from mmsdk.adapters.video.videomae import example_clips
from mmsdk.contracts.heads import HeadConfig
from mmsdk.models import TaskModel
from mmsdk.models.config import ModelConfig

GEN = torch.Generator().manual_seed(0)


def _model() -> TaskModel:
    config = ModelConfig.from_dict(
        {
            "adapter": "videomae",
            "adapter_config": {"num_frames": 4, "frame_size": [16, 16], "patch": 8},
            "encoder": {"dim": 16, "depth": 1, "heads": 2},
        }
    )
    return TaskModel(config, HeadConfig(num_outputs=3))


def test_scores_are_the_mean_of_each_clips_softmax() -> None:
    model = _model()
    clips = example_clips(6, 4, 3, (16, 16), GEN).reshape(2, 3, 4, 3, 16, 16)  # 2 videos × 3 clips
    with torch.no_grad():
        expected = model(clips.flatten(0, 1)).softmax(-1).reshape(2, 3, 3).mean(1)
    torch.testing.assert_close(average_clip_scores(model, clips, batch_size=4), expected)
    torch.testing.assert_close(average_clip_scores(model, clips[0]), expected[0])
    logits = average_clip_scores(model, clips, scores="logits")
    assert not torch.allclose(logits.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="clips must be"):
        average_clip_scores(model, clips[0, 0])


def test_a_video_file_is_scored_over_several_clips(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from mmsdk.adapters.video.writer import write_video

    paths = []
    for i in range(2):
        paths.append(write_video(tmp_path / f"v{i}.mkv", example_clips(1, 24, 3, (16, 16), GEN)[0], fps=10))
    model = _model()
    scores = predict_video(model, paths[0], num_clips=3, num_frames=4, stride=2)
    assert scores.shape == (3,) and torch.isclose(scores.sum(), torch.tensor(1.0))
    result = evaluate_videos(model, paths, [0, 1], num_clips=3, num_frames=4, stride=2)
    assert set(result) == {"acc_1_clip", "acc_3_clips"} and all(0 <= v <= 1 for v in result.values())
    with pytest.raises(ValueError, match="as many labels"):
        evaluate_videos(model, paths, [0])
