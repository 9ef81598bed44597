// Deployments: each endpoint's policy and variants as the model server serves them (with what the
// registry's aliases say), live requests, error rate and latency per variant, the traffic share,
// and the newest experiment analysis with each variant's interval.
import { Box, Heading, Stack, Text } from "@chakra-ui/react";

import { type Deployment, type ExperimentReport, type Serving, type VariantSpec } from "./api";
import { IntervalChart, format } from "./charts";
import { DataTable, Loaded, Problem, ReportLink, useApi } from "./common";

/** What the registry says of a served variant: its alias's version now, or "pinned". */
export function registryView(spec: VariantSpec): string {
  if (!spec.alias) {
    return "pinned";
  }
  if (spec.registry_version === null || spec.registry_version === undefined) {
    return `${spec.alias}: not found in the registry`;
  }
  return String(spec.registry_version) === String(spec.version)
    ? `${spec.alias} -> v${spec.registry_version}`
    : `${spec.alias} -> v${spec.registry_version} (not served yet)`;
}

function Experiment({ report, uri }: { report: ExperimentReport; uri: string }) {
  const level = `${Math.round((report.confidence ?? 0.95) * 100)}%`;
  const variants = Object.entries(report.variants ?? {}).filter(
    ([, v]) => typeof v.value === "number" && typeof v.lower === "number" && typeof v.upper === "number",
  );
  return (
    <Box mt={4} data-testid="experiment">
      <Heading size="sm">
        Experiment {report.window?.start} to {report.window?.end}: {report.decision}
      </Heading>
      <Text fontSize="sm" color="fg.muted">
        {report.metric} from {report.outcome}, {report.method}, {level} intervals; control {report.control};{" "}
        {report.outcomes} predictions with an outcome, {report.without_outcome} without. <ReportLink uri={uri} label="report" />
      </Text>
      <IntervalChart
        title={`${report.metric} per variant (${level} interval)`}
        rows={variants.map(([label, v]) => ({ label, lower: v.lower!, upper: v.upper!, value: v.value! }))}
      />
      <DataTable
        label="comparisons"
        header={["challenger", "difference", `${level} interval`, "P(better)", "samples needed", "verdict"]}
        rows={Object.entries(report.comparisons ?? {}).map(([c, v]) => [
          c,
          format(v.difference),
          `[${format(v.lower)}, ${format(v.upper)}]`,
          format(v.probability_better),
          format(v.required_samples, 0),
          v.verdict ?? "",
        ])}
      />
    </Box>
  );
}

function Endpoint({ name, deployment, serving, experiment }: { name: string; deployment: Deployment; serving: Serving; experiment?: { report: ExperimentReport; uri: string } }) {
  const stats = serving.stats[name]?.variants ?? {};
  const total = Object.values(stats).reduce((sum, s) => sum + (s.requests ?? 0), 0);
  return (
    <Box as="section" data-endpoint={name} mb={8}>
      <Heading size="md">
        {name}: {deployment.policy?.kind ?? ""}
      </Heading>
      <Text fontSize="sm" color="fg.muted">
        deployed by {deployment.deployed_by}: {deployment.reason}
      </Text>
      {deployment.error ? <Problem>{deployment.error}</Problem> : null}
      {deployment.follow_error ? <Problem>{deployment.follow_error}</Problem> : null}
      <DataTable
        label={`${name} variants`}
        header={["variant", "served (server)", "registry", "requests", "traffic", "error rate", "p50 ms", "p99 ms"]}
        rows={Object.entries(deployment.variants ?? {}).map(([v, s]) => [
          v,
          `${s.name} v${s.version}`,
          registryView(s),
          format(stats[v]?.requests, 0),
          total > 0 ? `${(((stats[v]?.requests ?? 0) / total) * 100).toFixed(1)} %` : "–",
          format(stats[v]?.error_rate),
          format(stats[v]?.p50_ms, 2),
          format(stats[v]?.p99_ms, 2),
        ])}
      />
      {experiment ? <Experiment report={experiment.report} uri={experiment.uri} /> : null}
    </Box>
  );
}

export function DeploymentsTab() {
  const serving = useApi<Serving>("deployments", 15);
  const experiments = useApi<Record<string, { report: ExperimentReport; uri: string }>>("experiments", 60);
  return (
    <Stack>
      <Loaded state={serving}>
        {(answer) => (
          <>
            {answer.error ? <Problem>The model server did not answer: {answer.error}</Problem> : null}
            {Object.keys(answer.deployments).length === 0 && !answer.error ? <Text>Nothing deployed.</Text> : null}
            {Object.entries(answer.deployments).map(([name, d]) => (
              <Endpoint key={name} name={name} deployment={d} serving={answer} experiment={experiments.data?.[name]} />
            ))}
          </>
        )}
      </Loaded>
      <Text fontSize="xs" color="fg.muted">
        Live from the model server's admin API and the registry, refreshed every 15 s. A variant deployed by alias follows
        it: a promotion or rollback moves its traffic.
      </Text>
    </Stack>
  );
}
