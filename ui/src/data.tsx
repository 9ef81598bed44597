// Data: validated and quarantined partitions with their reports, and the monitors' windows: drift
// score and served AUC per window over a chosen time range.
import { Heading, Stack } from "@chakra-ui/react";
import { useState } from "react";

import { type DataSummary, type MonitoringWindow } from "./api";
import { LineChart, TimeRange, format, inRange, windowLabels } from "./charts";
import { DataTable, Loaded, ReportLink, useApi } from "./common";

/** The ``count`` features with the largest divergence in any window. */
function mostMoved(windows: MonitoringWindow[], count: number): string[] {
  const largest = new Map<string, number>();
  for (const w of windows) {
    for (const [feature, value] of Object.entries(w.features ?? {})) {
      if (typeof value === "number") {
        largest.set(feature, Math.max(value, largest.get(feature) ?? -Infinity));
      }
    }
  }
  return [...largest.entries()].sort((a, b) => b[1] - a[1]).slice(0, count).map(([feature]) => feature);
}

export function DataTab() {
  const data = useApi<DataSummary>("data", 60);
  const [days, setDays] = useState<number | null>(null);
  return (
    <Loaded state={data}>
      {(summary) => {
        const windows = summary.monitoring
          .filter((w) => w.window_start)
          .sort((a, b) => String(a.window_start).localeCompare(String(b.window_start)));
        const endpoints = [...new Set(windows.map((w) => w.endpoint))];
        const allTimes = [...new Set(windows.map((w) => String(w.window_start)))];
        const times = inRange(allTimes, days).map((i) => allTimes[i]);
        const per = (field: "drift_score" | "auc") =>
          endpoints.map((e) => ({
            name: endpoints.length > 1 ? `${e}` : field === "auc" ? "AUC" : "drift score",
            values: times.map((t) => windows.find((w) => w.endpoint === e && w.window_start === t)?.[field] ?? null),
          }));
        return (
          <Stack>
            <Heading size="md">Validated partitions</Heading>
            <DataTable
              label="validated partitions"
              header={["table", "partition", ""]}
              rows={summary.validated.map((p) => [p.table, p.partition, <ReportLink uri={p.report} label="report" />])}
            />
            <Heading size="md">Quarantined partitions</Heading>
            <DataTable
              label="quarantined partitions"
              header={["table", "partition", ""]}
              rows={summary.quarantined.map((p) => [p.table, p.partition, <ReportLink uri={p.report} label="report" />])}
            />
            <Heading size="md">Drift and performance</Heading>
            {allTimes.length > 0 && (
              <>
                <TimeRange days={days} onChange={setDays} />
                <LineChart title="Drift score per monitoring window" xLabel="window start" xs={windowLabels(times)} series={per("drift_score")} />
                <LineChart title="AUC of the served model per window" xLabel="window start" xs={windowLabels(times)} series={per("auc")} />
                <LineChart
                  title="Drift per feature (the six that moved most)"
                  xLabel="window start"
                  xs={windowLabels(times)}
                  series={mostMoved(windows, 6).map((feature) => ({
                    name: feature,
                    values: times.map((t) => windows.find((w) => w.window_start === t && feature in (w.features ?? {}))?.features[feature] ?? null),
                  }))}
                />
              </>
            )}
            <DataTable
              label="monitoring windows"
              header={["endpoint", "window start", "drift score", "drifted", "AUC", "reports"]}
              rows={summary.monitoring.map((w) => [
                w.endpoint,
                w.window_start ?? "",
                format(w.drift_score),
                w.drifted.join(", "),
                format(w.auc),
                <>
                  <ReportLink uri={w.drift_report} label="drift" />
                  <ReportLink uri={w.performance_report} label="performance" />
                </>,
              ])}
            />
          </Stack>
        );
      }}
    </Loaded>
  );
}
