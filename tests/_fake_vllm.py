"""A stand-in for TRL's vLLM server client, shared by the vLLM sync tests (one process and ZeRO-3)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM


class FakeVLLMServer:
    """Stands in for `trl.generation.vllm_client.VLLMClient` (the client TRL's server mode talks to)."""

    def __init__(self, model_dir: str):
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.trainer = None
        # (trainer's global_step, weights received), one per sync
        self.syncs: list[tuple[int, dict[str, torch.Tensor]]] = []

    def get_server_info(self):
        return {"model_config": {"logprobs_mode": "processed_logprobs"}}

    def update_named_params(self, metadata, params):
        received = {name: t.detach().clone() for name, t in params}
        assert [m[0] for m in metadata] == list(received)
        self.model.load_state_dict(received, strict=True)  # every weight, under the names vLLM expects
        self.syncs.append((self.trainer.state.global_step, received))

    def reset_prefix_cache(self):
        pass

    @torch.no_grad()
    def generate(self, prompts, n, max_tokens, temperature, features=None, **sampling):
        eos = self.model.config.eos_token_id
        completions, logprobs = [], []
        for ids in prompts:
            out = self.model.generate(
                torch.tensor([ids] * n),
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_tokens,
                pad_token_id=0,
                eos_token_id=eos,
                output_scores=True,
                synced_gpus=False,  # one process samples (under ZeRO-3 generate would wait for the other ranks)
                return_dict_in_generate=True,
            )
            # processed log-probs (after temperature), as the server reports them
            scores = torch.stack(out.scores, 1).log_softmax(-1)
            for row, seq in enumerate(out.sequences[:, len(ids) :].tolist()):
                if eos in seq:
                    seq = seq[: seq.index(eos) + 1]
                completions.append(seq)
                logprobs.append([[scores[row, t, tok].item()] for t, tok in enumerate(seq)])
        return {"prompt_ids": prompts, "completion_ids": completions, "logprobs": logprobs}


def named(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
