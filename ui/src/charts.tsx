// Charts drawn in the browser as SVG from the API's numbers: each point carries its value in the
// DOM (data-series, data-x, data-y and a <title>), hovering shows every series' value at that x,
// and a chart over dates can be narrowed to a time range. Colours come from Chakra's tokens, so the
// charts follow Airflow's light and dark theme.
import { Box, Button, HStack, Text } from "@chakra-ui/react";
import { type MouseEvent, useState } from "react";

export interface Series {
  name: string;
  values: (number | null | undefined)[];
}

const PALETTE = ["blue.solid", "orange.solid", "green.solid", "purple.solid", "red.solid", "teal.solid"];
const token = (name: string): string => `var(--chakra-colors-${name.replaceAll(".", "-")})`;
const WIDTH = 560;
const HEIGHT = 220;
const PAD = { bottom: 36, left: 52, right: 36, top: 12 };

export const format = (value: number | null | undefined, digits = 4): string =>
  value === null || value === undefined || Number.isNaN(value)
    ? "–"
    : Number.isInteger(value)
      ? String(value)
      : value.toFixed(digits).replace(/^-(0\.?0*)$/, "$1"); // no "-0.0000"

/** Round ticks over [low, high] (steps of 1, 2 or 5 times a power of ten), and the extended bounds. */
export function niceTicks(low: number, high: number, count = 5): number[] {
  if (low === high) {
    return [low];
  }
  const raw = (high - low) / (count - 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const first = Math.floor(low / step) * step;
  const found: number[] = [];
  for (let t = first; t <= high + step * 1e-9; t += step) {
    found.push(Number(t.toPrecision(12)));
  }
  if (found[found.length - 1] < high) {
    found.push(Number((found[found.length - 1] + step).toPrecision(12)));
  }
  return found;
}

/** The decimals that tell evenly spaced ticks apart (0.05 steps: 2). */
function decimalsOf(ticks: number[]): number {
  return ticks.length > 1 ? Math.max(0, -Math.floor(Math.log10(ticks[1] - ticks[0]) + 1e-9)) : 3;
}

/** A line chart: one line per series over the labels ``xs``; a missing value is a gap. */
export function LineChart({ title, xs, series, xLabel }: { title: string; xs: string[]; series: Series[]; xLabel: string }) {
  const [hover, setHover] = useState<number | null>(null);
  const numbers = series.flatMap((s) => s.values.filter((v): v is number => typeof v === "number"));
  if (numbers.length === 0) {
    return null;
  }
  let low = Math.min(...numbers);
  let high = Math.max(...numbers);
  if (low === high) {
    // A flat line: some room around it, never below zero for a quantity that cannot be negative.
    const room = Math.abs(low) * 0.1 || 1;
    low = low >= 0 ? Math.max(0, low - room) : low - room;
    high += room;
  }
  const yTicks = niceTicks(low, high);
  const yDigits = decimalsOf(yTicks);
  low = yTicks[0];
  high = yTicks[yTicks.length - 1];
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (xs.length === 1 ? innerW / 2 : (i * innerW) / (xs.length - 1));
  const y = (v: number) => PAD.top + innerH - ((v - low) / (high - low)) * innerH;
  const every = Math.max(1, Math.ceil(xs.length / 8));
  const nearest = (event: MouseEvent<SVGSVGElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const at = ((event.clientX - box.left) / box.width) * WIDTH;
    const index = xs.length === 1 ? 0 : Math.round(((at - PAD.left) / innerW) * (xs.length - 1));
    setHover(Math.min(xs.length - 1, Math.max(0, index)));
  };
  return (
    <Box as="figure" data-chart={title} my={3}>
      <Text as="figcaption" fontWeight="semibold" fontSize="sm" mb={1}>
        {title}
      </Text>
      <HStack gap={4} fontSize="xs" color="fg.muted" mb={1}>
        {series.map((s, i) => (
          <HStack key={s.name} gap={1}>
            <Box w="10px" h="10px" borderRadius="full" style={{ background: token(PALETTE[i % PALETTE.length]) }} />
            <span>{s.name}</span>
          </HStack>
        ))}
      </HStack>
      <Box position="relative" maxW={`${WIDTH}px`}>
        <svg
          role="img"
          aria-label={title}
          viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
          width="100%"
          onMouseMove={nearest}
          onMouseLeave={() => setHover(null)}
          style={{ color: token("fg.muted"), fontSize: 11 }}
        >
          {yTicks.map((t) => (
            <g key={t}>
              <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(t)} y2={y(t)} stroke={token("border")} />
              <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end" fill="currentColor">
                {t.toFixed(yDigits)}
              </text>
            </g>
          ))}
          {xs.map((label, i) =>
            i % every === 0 || i === xs.length - 1 ? (
              <text key={label + i} x={x(i)} y={HEIGHT - PAD.bottom + 16} textAnchor="middle" fill="currentColor">
                {label}
              </text>
            ) : null,
          )}
          <text x={PAD.left + innerW / 2} y={HEIGHT - 4} textAnchor="middle" fill="currentColor">
            {xLabel}
          </text>
          {hover !== null && (
            <line x1={x(hover)} x2={x(hover)} y1={PAD.top} y2={PAD.top + innerH} stroke={token("fg.subtle")} strokeDasharray="3 3" />
          )}
          {series.map((s, k) => {
            const colour = token(PALETTE[k % PALETTE.length]);
            const segments: string[] = [];
            let open = false;
            s.values.forEach((v, i) => {
              if (typeof v === "number") {
                segments.push(`${open ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`);
                open = true;
              } else {
                open = false;
              }
            });
            return (
              <g key={s.name}>
                <path d={segments.join(" ")} fill="none" stroke={colour} strokeWidth={2} />
                {s.values.map((v, i) =>
                  typeof v === "number" ? (
                    <circle key={i} cx={x(i)} cy={y(v)} r={hover === i ? 5 : 3.5} fill={colour} data-series={s.name} data-x={xs[i]} data-y={v}>
                      <title>{`${s.name} at ${xs[i]}: ${format(v)}`}</title>
                    </circle>
                  ) : null,
                )}
              </g>
            );
          })}
        </svg>
        {hover !== null && (
          <Box
            data-testid="chart-tooltip"
            position="absolute"
            top={1}
            left={`${(x(hover) / WIDTH) * 100}%`}
            transform={x(hover) > WIDTH / 2 ? "translateX(-105%)" : "translateX(5%)"}
            bg="bg.panel"
            borderWidth="1px"
            borderColor="border"
            borderRadius="md"
            px={2}
            py={1}
            fontSize="xs"
            pointerEvents="none"
            boxShadow="sm"
          >
            <Text fontWeight="semibold">{xs[hover]}</Text>
            {series.map((s) => (
              <Text key={s.name}>
                {s.name}: {format(s.values[hover])}
              </Text>
            ))}
          </Box>
        )}
      </Box>
    </Box>
  );
}

const RANGES: [string, number | null][] = [
  ["all", null],
  ["365 d", 365],
  ["90 d", 90],
  ["30 d", 30],
  ["7 d", 7],
];

/** The buttons that choose a time range: the last ``days`` (null: all). */
export function TimeRange({ days, onChange }: { days: number | null; onChange: (days: number | null) => void }) {
  return (
    <HStack gap={1} mt={2} role="group" aria-label="time range">
      {RANGES.map(([label, value]) => (
        <Button key={label} size="2xs" variant={days === value ? "solid" : "outline"} data-range={label} onClick={() => onChange(value)}>
          {label}
        </Button>
      ))}
    </HStack>
  );
}

/** The indexes of ``times`` (ISO dates) within the last ``days`` before the newest (all for null). */
export function inRange(times: string[], days: number | null): number[] {
  if (days === null || times.length === 0) {
    return times.map((_, i) => i);
  }
  const newest = Math.max(...times.map((t) => Date.parse(t)));
  return times.flatMap((t, i) => (newest - Date.parse(t) <= days * 86_400_000 ? [i] : []));
}

/** Labels for window starts: the date, or the time too where windows share a day (a replayed month). */
export function windowLabels(times: string[]): string[] {
  const sameDay = new Set(times.map((t) => t.slice(0, 10))).size !== times.length;
  return times.map((t) => (sameDay ? t.slice(5, 16).replace("T", " ") : t.slice(0, 10)));
}

/** Horizontal intervals per row (an estimate with its interval, e.g. per experiment variant). */
export function IntervalChart({ title, rows }: { title: string; rows: { label: string; value: number; lower: number; upper: number }[] }) {
  if (rows.length === 0) {
    return null;
  }
  const xTicks = niceTicks(Math.min(...rows.map((r) => r.lower)), Math.max(...rows.map((r) => r.upper)));
  const low = xTicks[0];
  const high = xTicks[xTicks.length - 1];
  const span = high - low || 1;
  const rowH = 32;
  const height = rows.length * rowH + 30;
  const x = (v: number) => 60 + ((v - low) / span) * (WIDTH - 90);
  return (
    <Box as="figure" data-chart={title} my={3} maxW={`${WIDTH}px`}>
      <Text as="figcaption" fontWeight="semibold" fontSize="sm" mb={1}>
        {title}
      </Text>
      <svg role="img" aria-label={title} viewBox={`0 0 ${WIDTH} ${height}`} width="100%" style={{ color: token("fg.muted"), fontSize: 11 }}>
        {xTicks.map((t) => (
          <g key={t}>
            <line x1={x(t)} x2={x(t)} y1={4} y2={height - 24} stroke={token("border")} />
            <text x={x(t)} y={height - 8} textAnchor="middle" fill="currentColor">
              {t.toFixed(decimalsOf(xTicks))}
            </text>
          </g>
        ))}
        {rows.map((r, i) => {
          const cy = 18 + i * rowH;
          return (
            <g key={r.label} data-series={r.label} data-y={r.value} data-lower={r.lower} data-upper={r.upper}>
              <title>{`${r.label}: ${format(r.value)} [${format(r.lower)}, ${format(r.upper)}]`}</title>
              <text x={52} y={cy + 4} textAnchor="end" fill="currentColor">
                {r.label}
              </text>
              <line x1={x(r.lower)} x2={x(r.upper)} y1={cy} y2={cy} stroke={token("blue.solid")} strokeWidth={2} />
              <circle cx={x(r.value)} cy={cy} r={5} fill={token("blue.solid")} />
            </g>
          );
        })}
      </svg>
    </Box>
  );
}
