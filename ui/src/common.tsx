// Building blocks every view shares: loading an API answer, tables, report links, state badges and
// the decision form (approve, reject, promote, roll back with the reason kept in the history).
import { Alert, Badge, Box, Button, HStack, Link, Spinner, Table, Text, Textarea } from "@chakra-ui/react";
import { type ReactNode, useCallback, useEffect, useState } from "react";

import { type RolloutStep, get, post, reportUrl } from "./api";

/** An API answer, reloaded every ``everyS`` seconds when given, and a ``reload`` for after an action. */
export function useApi<T>(path: string | null, everyS?: number) {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<string | undefined>();
  const reload = useCallback(() => {
    if (path === null) {
      return;
    }
    get<T>(path)
      .then((answer) => {
        setData(answer);
        setError(undefined);
      })
      .catch((err: Error) => setError(err.message));
  }, [path]);
  useEffect(() => {
    reload();
    if (everyS === undefined) {
      return undefined;
    }
    const timer = setInterval(reload, everyS * 1000);
    return () => clearInterval(timer);
  }, [reload, everyS]);
  return { data, error, reload };
}

/** The answer's content, a spinner while it loads, or the API's error in words. */
export function Loaded<T>({ state, children }: { state: { data?: T; error?: string }; children: (data: T) => ReactNode }) {
  if (state.error !== undefined) {
    return <Problem>{state.error}</Problem>;
  }
  if (state.data === undefined) {
    return <Spinner size="sm" />;
  }
  return <>{children(state.data)}</>;
}

export function Problem({ children }: { children: ReactNode }) {
  return (
    <Alert.Root status="warning" my={2} data-testid="problem">
      <Alert.Indicator />
      <Alert.Title>{children}</Alert.Title>
    </Alert.Root>
  );
}

/** A plain table: ``rows`` of cells under ``header``. */
export function DataTable({ header, rows, label }: { header: string[]; rows: ReactNode[][]; label: string }) {
  if (rows.length === 0) {
    return (
      <Text fontSize="sm" color="fg.muted" data-table={label}>
        None.
      </Text>
    );
  }
  return (
    <Table.Root size="sm" variant="outline" my={2} aria-label={label} data-table={label}>
      <Table.Header>
        <Table.Row>
          {header.map((h, i) => (
            <Table.ColumnHeader key={i}>{h}</Table.ColumnHeader>
          ))}
        </Table.Row>
      </Table.Header>
      <Table.Body>
        {rows.map((row, i) => (
          <Table.Row key={i}>
            {row.map((c, j) => (
              <Table.Cell key={j}>{c}</Table.Cell>
            ))}
          </Table.Row>
        ))}
      </Table.Body>
    </Table.Root>
  );
}

export function ReportLink({ uri, label }: { uri: string; label: string }) {
  return uri ? (
    <Link href={reportUrl(uri)} target="_blank" rel="noreferrer" colorPalette="blue" variant="underline" me={2}>
      {label}
    </Link>
  ) : null;
}

const STATE_COLOURS: Record<string, string> = {
  approved: "green",
  candidate: "blue",
  champion: "purple",
  rejected: "red",
  retired: "gray",
  "rolled back": "orange",
};

export function StateBadge({ state }: { state: string }) {
  return state ? <Badge colorPalette={STATE_COLOURS[state] ?? "gray"}>{state}</Badge> : null;
}

/**
 * The buttons of a decision and the form that asks why: the API records the signed-in user and the
 * reason in the version's history; its refusal (403, 409) is shown as it answers.
 */
export function Decide({ actions, done }: { actions: { label: string; path: string }[]; done: () => void }) {
  const [open, setOpen] = useState<{ label: string; path: string } | null>(null);
  const [why, setWhy] = useState("");
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const send = () => {
    if (open === null) {
      return;
    }
    post<{ by: string }>(open.path, { why })
      .then((answer) => {
        setOutcome({ ok: true, text: `${open.label} done by ${answer.by}` });
        setOpen(null);
        setWhy("");
        done();
      })
      .catch((err: Error) => setOutcome({ ok: false, text: err.message }));
  };
  return (
    <Box>
      <HStack gap={1}>
        {actions.map((action) => (
          <Button key={action.label} size="xs" variant="outline" data-action={action.label} onClick={() => setOpen(action)}>
            {action.label}
          </Button>
        ))}
      </HStack>
      {open !== null && (
        <Box mt={2} data-testid="decision-form">
          <Textarea
            size="sm"
            placeholder={`${open.label}: why? (kept in the version's history)`}
            value={why}
            onChange={(event) => setWhy(event.target.value)}
          />
          <HStack mt={1} gap={1}>
            <Button size="xs" colorPalette="blue" disabled={why.trim().length < 3} onClick={send} data-action="confirm">
              {open.label}
            </Button>
            <Button size="xs" variant="ghost" onClick={() => setOpen(null)}>
              cancel
            </Button>
          </HStack>
        </Box>
      )}
      {outcome !== null && (
        <Text fontSize="sm" mt={1} color={outcome.ok ? "fg.success" : "fg.error"} data-testid="outcome">
          {outcome.text}
        </Text>
      )}
    </Box>
  );
}

/** A stepwise rollout's decisions: each step's share of the traffic, its verdict and why. */
export function RolloutSteps({ steps, label }: { steps: RolloutStep[]; label: string }) {
  if (steps.length === 0) {
    return null;
  }
  return (
    <Box data-testid="rollout">
      <Text fontSize="sm" fontWeight="semibold" mt={2}>
        {label}
      </Text>
      <DataTable
        label={label}
        header={["step", "traffic", "decision", "candidate requests", "why"]}
        rows={steps.map((s, i) => [
          String(s.step ?? i + 1),
          typeof s.weight === "number" ? `${Math.round(s.weight * 100)} %` : "–",
          s.healthy === undefined ? "–" : s.healthy ? "healthy: next step" : "rolled back",
          s.candidate_requests === undefined ? "–" : String(s.candidate_requests),
          (s.reasons ?? []).join("; "),
        ])}
      />
    </Box>
  );
}
