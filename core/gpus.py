"""The machine's NVIDIA GPUs through NVML (no Django: a cluster node's agent reads them too)."""

from __future__ import annotations

from typing import Any

GB = 1024**3


def gb(value: float) -> float:
    return round(value / GB, 2)


def gpu_stats() -> list[dict[str, Any]]:
    """One entry per NVIDIA GPU through NVML; an empty list when there is no driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver or no device: no GPUs to report
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = pynvml.nvmlDeviceGetUtilizationRates(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_gb": gb(memory.total),
                    "memory_used_gb": gb(memory.used),
                    "memory_free_gb": gb(memory.free),
                    "memory_total_bytes": int(memory.total),
                    "memory_free_bytes": int(memory.free),
                    "utilization_percent": float(utilization.gpu),
                    "temperature_c": float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
                }
            )
        return gpus
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
