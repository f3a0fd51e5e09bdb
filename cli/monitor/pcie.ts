// PCIe link capacity: what the Copy engine's throughput is measured against.

/** Usable bytes/s per lane and direction, after line encoding (8b/10b for gen 1-2, 128b/130b for 3-5, FLIT for 6). */
const BYTES_PER_LANE: Record<number, number> = {
  1: 250e6,
  2: 500e6,
  3: 984.6e6,
  4: 1969.2e6,
  5: 3938.5e6,
  6: 7877e6,
};

/** The link's maximum one-direction bandwidth, or null when generation or width is unknown. */
export function pcieLinkMaxBytesPerSec(gen: number | null, width: number | null): number | null {
  if (gen === null || width === null || width <= 0) return null;
  const perLane = BYTES_PER_LANE[gen];
  return perLane === undefined ? null : perLane * width;
}
