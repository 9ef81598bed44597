// The "Data" view of a validation task instance: the partition's verdict, each expectation with its
// unexpected count and sample, the row-level split into quarantine, the quarantined rows, and the
// full HTML report.
import { Box, Heading, Stack, Text } from "@chakra-ui/react";

import { type QuarantinedRows, type TaskValidation, reportUrl, segment } from "./api";
import { format } from "./charts";
import { DataTable, Loaded, ReportLink, useApi } from "./common";
import { type ViewProps } from "./views";

export function ValidationView({ dagId, runId, taskId, mapIndex }: ViewProps) {
  const path =
    dagId && runId && taskId
      ? `task-instances/${segment(dagId)}/${segment(runId)}/${segment(taskId)}/validation?map_index=${mapIndex ?? "-1"}`
      : null;
  const found = useApi<TaskValidation>(path);
  if (path === null) {
    return <Text p={4}>Open a validation task instance to see its report.</Text>;
  }
  return (
    <Stack p={4} data-view="validation">
      <Loaded state={found}>
        {({ report, summary, quarantined }) => {
          const split = summary?.row_split;
          const failed = (summary?.outcomes ?? []).filter((o) => !o.success);
          return (
            <>
              <Heading size="md" data-testid="verdict">
                {summary === null
                  ? "Validation report"
                  : split?.accepted
                    ? `Passed after quarantining ${rowsOf(split.invalid_rows)}`
                    : summary.success
                      ? `Passed: ${format(summary.rows, 0)} rows`
                      : "Quarantined: the partition failed its suite"}
              </Heading>
              {summary ? (
                <Text fontSize="sm" color="fg.muted">
                  {summary.partition_uri} against suite {summary.suite}; {failed.length} of {summary.outcomes?.length ?? 0}{" "}
                  expectations failed.
                </Text>
              ) : null}
              {summary?.read_error ? <Text color="fg.error">{summary.read_error}</Text> : null}
              {split ? (
                <Text fontSize="sm" data-testid="row-split">
                  Row-level split: {format(split.valid_rows, 0)} valid, {format(split.invalid_rows, 0)} invalid (
                  {(split.invalid_fraction * 100).toFixed(2)} %, bound {split.bound}):{" "}
                  {split.accepted ? "accepted, the invalid rows are in quarantine" : `refused: ${split.reason}`}
                </Text>
              ) : null}
              {summary ? (
                <DataTable
                  label="expectations"
                  header={["column", "expectation", "result", "unexpected", "sample"]}
                  rows={[...failed, ...(summary.outcomes ?? []).filter((o) => o.success)].map((o) => [
                    o.column ?? "table",
                    `${o.expectation}(${o.rule})`,
                    o.error ? `error: ${o.error}` : o.success ? "pass" : "FAIL",
                    o.unexpected_count === null || o.unexpected_count === undefined
                      ? ""
                      : `${o.unexpected_count}${typeof o.unexpected_percent === "number" ? ` (${o.unexpected_percent.toFixed(2)} %)` : ""}`,
                    (o.sample ?? []).map((v) => JSON.stringify(v)).join(", "),
                  ])}
                />
              ) : null}
              {quarantined ? <Quarantined rows={quarantined} /> : null}
              <Box>
                <ReportLink uri={report} label="open the full report" />
              </Box>
              <Box borderWidth="1px" borderColor="border" borderRadius="md" overflow="hidden">
                {/* The report is our own HTML from the lake; sandboxed, no script of it runs in the UI's origin. */}
                <iframe
                  title="validation report"
                  src={reportUrl(report)}
                  sandbox=""
                  style={{ background: "white", border: 0, display: "block", height: 600, width: "100%" }}
                />
              </Box>
            </>
          );
        }}
      </Loaded>
    </Stack>
  );
}

/** The quarantined rows themselves (the first of them), or why they could not be shown. */
function Quarantined({ rows }: { rows: QuarantinedRows }) {
  const cell = (v: unknown) => (v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return (
    <Box data-testid="quarantined">
      <Heading size="sm" mt={2}>
        Quarantined rows
      </Heading>
      {rows.error ? (
        <Text color="fg.error">{rows.error}</Text>
      ) : (
        <>
          <Text fontSize="sm" color="fg.muted">
            {rowsOf(rows.rows)} at {rows.uri}
            {rows.rows !== null && rows.rows > rows.sample.length ? `; the first ${rows.sample.length}` : ""}
          </Text>
          <Box overflowX="auto">
            <DataTable label="quarantined rows" header={rows.columns} rows={rows.sample.map((r) => rows.columns.map((c) => cell(r[c])))} />
          </Box>
        </>
      )}
    </Box>
  );
}

/** "1 row", "2,009 rows". */
function rowsOf(count: number | null | undefined): string {
  return `${format(count, 0)} ${count === 1 ? "row" : "rows"}`;
}
