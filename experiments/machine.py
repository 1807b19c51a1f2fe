"""One line about the machine an experiment's call runs on, for its machines.log.

    python experiments/machine.py >> machines.log

UTC time, torch's CPU capability, which of the instruction sets that oneDNN's
convolutions choose between the CPU has, and the CPU model, tab-separated. Runs of a
commit that predates the ``machines`` field of ``result.json`` are placed on a machine
by these lines (a run trains on the machine of the last line before it finished).
"""

import datetime
import re

import torch

WANTED = "avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16".split()

text = open("/proc/cpuinfo").read()
flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())
model = re.search(r"^model name\s*:(.*)$", text, re.M)
print(
    datetime.datetime.now(datetime.UTC).strftime("%FT%TZ"),
    torch.backends.cpu.get_cpu_capability(),
    ",".join(f for f in WANTED if f in flags) or "-",
    model.group(1).strip() if model else "?",
    sep="\t",
)
