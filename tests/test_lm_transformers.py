"""``losskit.integrations.transformers``: HF causal LMs trained through the fused head.

Oracle: the same model's own forward (logits, then transformers' ``ForCausalLMLoss``). Tiny random
configs built here (no downloads): Llama, Gemma 2 (final-logit softcapping), Qwen2. Skipped when
transformers is not installed.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

transformers = pytest.importorskip("transformers")

from losskit.integrations.transformers import apply, is_applied, revert  # noqa: E402

V, H, T = 96, 32, 12


def _configs():
    common = {
        "vocab_size": V,
        "hidden_size": H,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "attn_implementation": "eager",
    }
    return {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, common),
        "gemma2": (
            transformers.Gemma2Config,
            transformers.Gemma2ForCausalLM,
            {**common, "head_dim": 8, "final_logit_softcapping": 3.0, "sliding_window": 8},
        ),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, common),
    }


def _model(family: str, seed: int = 0):
    config_cls, model_cls, kw = _configs()[family]
    torch.manual_seed(seed)
    return model_cls(config_cls(**kw)).float()


def _batch(seed: int = 1, b: int = 2):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (b, T), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt
    return ids, labels


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("family", ["llama", "gemma2", "qwen2"])
@pytest.mark.parametrize("num_items", [None, 13])
def test_loss_and_every_gradient_equal_the_models_own(family, num_items):
    model = _model(family)
    ids, labels = _batch()
    kw = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    theirs = model(input_ids=ids, labels=labels, **kw).loss
    theirs.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    apply(model)
    out = model(input_ids=ids, labels=labels, **kw)
    assert out.logits is None
    out.loss.backward()
    assert _rel(out.loss.detach(), theirs.detach()) <= 1e-6
    for name, p in model.named_parameters():
        assert _rel(p.grad, ref[name]) <= 1e-6, name
    # Without labels the model's own code runs: logits are there.
    assert model(input_ids=ids).logits.shape == (2, T, V)
    revert(model)
    assert not is_applied(model) and model(input_ids=ids, labels=labels).logits is not None


def test_apply_keeps_the_signature_and_is_idempotent():
    model = _model("llama")
    before = inspect.signature(model.forward)
    assert apply(apply(model)) is model and is_applied(model)
    assert inspect.signature(model.forward) == before
    assert any(p.kind is p.VAR_KEYWORD for p in before.parameters.values())
    twin = copy.deepcopy(model)  # the copy's forward is bound to the copy
    assert twin.forward.__self__ is twin
    with pytest.raises(TypeError, match="lm_head"):
        apply(torch.nn.Linear(2, 2))


def test_twenty_training_steps_track_the_models_own_loss_curve():
    torch.manual_seed(0)
    ours, theirs = _model("llama"), _model("llama")
    apply(ours)
    curves = []
    for model in (ours, theirs):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for step in range(20):
            ids, labels = _batch(seed=100 + step % 2)  # two batches: it memorises them
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves.append(torch.tensor(losses, dtype=torch.float64))
    assert curves[1][-1] < curves[1][0]  # it trains
    assert (curves[0] - curves[1]).abs().max().item() <= 1e-5, curves


class _Data(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        ids, labels = _batch(seed=1000 + i, b=1)
        return {"input_ids": ids[0], "labels": labels[0]}


def _train(model, tmp_path, **args):
    pytest.importorskip("accelerate")
    targs = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        **args,
    )
    trainer = transformers.Trainer(model=model, args=targs, train_dataset=_Data())
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], trainer


@pytest.mark.parametrize(
    "args", [{"gradient_accumulation_steps": 2}, {"bf16": True}], ids=["grad_accum_2", "bf16"]
)
def test_trainer_runs_match_the_models_own(args, tmp_path):
    ours_losses, trainer = _train(apply(_model("llama")), tmp_path / "ours", **args)
    assert trainer.model_accepts_loss_kwargs  # so Trainer passes num_items_in_batch
    theirs_losses, _ = _train(_model("llama"), tmp_path / "theirs", **args)
    assert len(ours_losses) == len(theirs_losses) == 3
    # float32: equal to rounding; bf16 autocast: both bf16 products, float32 statistics.
    tol = 1e-5 if "bf16" not in args else 2e-2
    for a, b in zip(ours_losses, theirs_losses, strict=True):
        assert abs(a - b) <= tol * abs(b), (ours_losses, theirs_losses)
