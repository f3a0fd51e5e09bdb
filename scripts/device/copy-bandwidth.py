# Measures device-to-device copy bandwidth (bytes read + written per second) with torch; prints GB/s.
import torch
n = 2 * 1024**3
a = torch.empty(n, dtype=torch.uint8, device='cuda'); b = torch.empty_like(a)
a.random_(0, 255)
for _ in range(3): b.copy_(a)
torch.cuda.synchronize()
times = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize(); times.append(s.elapsed_time(e) / 1000)
times.sort()
print(f"{2 * n / times[len(times) // 2] / 1e9:.0f}")
