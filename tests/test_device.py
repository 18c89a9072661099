"""Every decision taken from the device, for GPUs and CPUs readers have, with faked device properties."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from googlenet import device as dev
from googlenet.device import DeviceFacts, amp_dtype, device_facts, plan_for, precision

GIB = 2**30
# (name, compute capability, memory in GiB, CPU cores): what torch.cuda reports on each
GPUS = {
    "colab_t4": ("Tesla T4", (7, 5), 14.7, 2),
    "v100": ("Tesla V100-SXM2-16GB", (7, 0), 15.8, 8),
    "l4": ("NVIDIA L4", (8, 9), 22.0, 12),
    "a100": ("NVIDIA A100-SXM4-40GB", (8, 0), 39.4, 12),
    "h100": ("NVIDIA H100 80GB HBM3", (9, 0), 79.1, 16),
    "p100": ("Tesla P100-PCIE-16GB", (6, 0), 15.9, 4),
    "small_gpu": ("NVIDIA GeForce GTX 1650", (7, 5), 3.8, 4),
}
EXPECTED_AMP = {"colab_t4": "fp16", "v100": "fp16", "l4": "bf16", "a100": "bf16", "h100": "bf16",
                "p100": "none", "small_gpu": "fp16"}


def fake_cuda(monkeypatch, gpu: str) -> None:
    """Make torch.cuda and the core count report one of :data:`GPUS`."""
    name, (major, minor), memory, cores = GPUS[gpu]
    props = SimpleNamespace(name=name, major=major, minor=minor, total_memory=int(memory * GIB))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(dev, "cpu_cores", lambda: cores)


@pytest.mark.parametrize("gpu", GPUS)
def test_every_decision_on_each_gpu(monkeypatch, gpu):
    fake_cuda(monkeypatch, gpu)
    facts = device_facts("cuda:0")
    name, capability, memory, cores = GPUS[gpu]
    assert facts == DeviceFacts("cuda", name, cores, capability, pytest.approx(memory, abs=0.01))
    plan = plan_for(facts)
    assert plan.amp == EXPECTED_AMP[gpu]
    assert amp_dtype("auto", torch.device("cuda:0")) == {"bf16": torch.bfloat16, "fp16": torch.float16,
                                                         "none": None}[plan.amp]
    assert dev.fast_bf16("cuda") == (plan.amp == "bf16")
    assert plan.batch_size == (128 if gpu == "small_gpu" else 256)
    assert plan.workers == min(8, cores) and plan.pin_memory
    lines = plan.lines()
    assert len(lines) == 4 and lines[0].startswith(f"precision: {plan.amp} (compute capability")


def test_colab_t4_takes_fp16_although_torch_says_it_emulates_bf16(monkeypatch):
    """torch.cuda.is_bf16_supported() answers True on a T4 (emulation): the decision ignores that."""
    fake_cuda(monkeypatch, "colab_t4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert not dev.fast_bf16("cuda") and amp_dtype("auto", torch.device("cuda")) == torch.float16
    assert "gradient scaler" in precision(device_facts("cuda"))[1]


def test_apple_mps_trains_in_float32_without_pinned_memory():
    plan = plan_for(DeviceFacts("mps", "Apple MPS", 10))
    assert (plan.amp, plan.batch_size, plan.workers, plan.pin_memory) == ("none", 128, 8, False)


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_cpus_with_and_without_native_bf16(cpu_bf16):
    plan = plan_for(DeviceFacts("cpu", "AMD EPYC", 2, cpu_bf16=cpu_bf16))
    assert plan.amp == ("bf16" if cpu_bf16 else "none")
    assert (plan.batch_size, plan.workers, plan.pin_memory) == (128, 1, False)


@pytest.mark.parametrize(("flags", "capability", "native"), [
    ("fpu avx2 avx512f avx512_bf16", "AVX512", True),
    ("fpu avx2 amx_bf16 amx_tile", "AVX512", True),
    ("fpu avx2 avx512f avx512_bf16", "AVX2", False),  # ATEN_CPU_CAPABILITY=avx2
    ("fpu avx2 avx512f avx512_bf16", "DEFAULT", False),
    ("fpu avx2 avx512f", "AVX512", False),  # AVX-512 without its bf16 extension
    ("", "DEFAULT", False),  # no /proc/cpuinfo (macOS, Windows)
])
def test_native_cpu_bf16_needs_the_flag_and_pytorchs_dispatch(monkeypatch, flags, capability, native):
    monkeypatch.setattr(dev, "cpuinfo", lambda: f"flags\t\t: {flags}\n")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert dev.native_cpu_bf16() is native
    assert dev.fast_bf16("cpu") is native
    assert amp_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native else None)


@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_aten_cpu_capability_is_honoured(capability):
    """The real environment variable, read by PyTorch in a fresh process, on a CPU that claims bf16.

    (Only capabilities below the machine's: torch 2.6 executes AVX-512 code when told to, and dies
    on a CPU without it.)"""
    code = ("from googlenet import device as d; d.cpuinfo = lambda: 'flags : avx512f avx512_bf16';"
            "print(d.fast_bf16('cpu'))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_amp_flag_values():
    cpu = torch.device("cpu")
    assert amp_dtype("bf16", cpu) == torch.bfloat16 and amp_dtype("fp16", cpu) == torch.float16
    assert amp_dtype("none", cpu) is None
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_dtype("fp8", cpu)


def test_a_device_this_machine_lacks_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        dev.pick_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        dev.pick_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        dev.pick_device("gpu")
    assert dev.pick_device("auto") == torch.device("cpu") == dev.pick_device("cpu")
    fake_cuda(monkeypatch, "l4")
    with pytest.raises(ValueError, match=r"1 CUDA GPU\(s\), cuda:0 to cuda:0"):
        dev.pick_device("cuda:1")
    assert dev.pick_device("cuda:0") == torch.device("cuda", 0)


def test_the_readmes_table_is_what_the_package_decides():
    """Each row of the README's table, for a machine of that row (2 cores; GPUs with 16 GiB)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## What the package decides from your machine")[1].split("\n\n")[2]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    machines = [DeviceFacts("cpu", "x", 2, cpu_bf16=True), DeviceFacts("cpu", "x", 2),
                DeviceFacts("cuda", "T4", 2, (7, 5), 16), DeviceFacts("cuda", "H100", 2, (9, 0), 16),
                DeviceFacts("mps", "Apple MPS", 2)]
    words = {"bf16": "bf16", "float32": "none", "fp16 with a gradient scaler": "fp16"}
    for row, facts in zip(rows, machines, strict=True):
        plan = plan_for(facts)
        assert words[row[1]] == plan.amp, row
        assert row[2].startswith(str(plan.batch_size)), row
        assert (row[4] == "yes") == plan.pin_memory, row
