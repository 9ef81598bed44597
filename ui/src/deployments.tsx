// Deployments: each endpoint's policy and variants as the model server serves them (with what the
// registry's aliases say), live requests, error rate and latency per variant, the traffic share,
// and the newest experiment analysis with each variant's interval.
import { Box, Heading, SimpleGrid, Stack, Text } from "@chakra-ui/react";
import { useEffect, useState } from "react";

import { type Deployment, type ExperimentReport, type Me, type Serving, type VariantSpec, segment } from "./api";
import { IntervalChart, LineChart, format } from "./charts";
import { DataTable, Decide, Loaded, Problem, ReportLink, RolloutSteps, useApi } from "./common";

/** One reading of the server's statistics, kept while the tab is open (the server keeps totals only). */
interface Reading {
  at: string;
  stats: Serving["stats"];
}

const KEEP = 40; // readings: 10 minutes at one every 15 s

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

function LiveCharts({ name, variants, readings }: { name: string; variants: string[]; readings: Reading[] }) {
  if (readings.length < 2) {
    return (
      <Text fontSize="xs" color="fg.muted">
        The live charts start with the next reading (every 15 s).
      </Text>
    );
  }
  const xs = readings.map((r) => r.at);
  const series = (field: "requests" | "p99_ms" | "error_rate") =>
    variants.map((v) => ({
      name: v,
      // An endpoint's statistics without a variant: it served nothing since the deployment.
      values: readings.map((r) => {
        const endpoint = r.stats[name];
        const value = endpoint?.variants?.[v]?.[field];
        return value ?? (endpoint && field === "requests" ? 0 : null);
      }),
    }));
  return (
    <SimpleGrid columns={{ base: 1, xl: 3 }} gap={4}>
      <LineChart title={`${name}: requests per variant (since deployment)`} xLabel="time" xs={xs} series={series("requests")} />
      <LineChart title={`${name}: p99 latency per variant (ms)`} xLabel="time" xs={xs} series={series("p99_ms")} />
      <LineChart title={`${name}: error rate per variant`} xLabel="time" xs={xs} series={series("error_rate")} />
    </SimpleGrid>
  );
}

function Endpoint({
  name,
  deployment,
  serving,
  experiment,
  readings,
  me,
  done,
}: {
  name: string;
  deployment: Deployment;
  serving: Serving;
  experiment?: { report: ExperimentReport; uri: string };
  readings: Reading[];
  me: Me;
  done: () => void;
}) {
  const stats = serving.stats[name]?.variants ?? {};
  const total = Object.values(stats).reduce((sum, s) => sum + (s.requests ?? 0), 0);
  const variants = Object.entries(deployment.variants ?? {});
  // A variant that follows the champion alias moves with a rollback of its model.
  const followed = [...new Set(variants.filter(([, s]) => s.alias === "champion" && s.name).map(([, s]) => s.name as string))];
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
      <LiveCharts name={name} variants={variants.map(([v]) => v)} readings={readings} />
      {variants.map(([v, s]) => (
        <RolloutSteps key={v} steps={s.rollout ?? []} label={`${name}/${v} rollout of ${s.name} v${s.version}`} />
      ))}
      {me.may_decide && followed.length > 0 ? (
        <Box mt={2}>
          <Decide
            actions={followed.map((model) => ({ label: `roll back ${model}`, path: `models/${segment(model)}/rollback` }))}
            done={done}
          />
        </Box>
      ) : null}
      {experiment ? <Experiment report={experiment.report} uri={experiment.uri} /> : null}
    </Box>
  );
}

export function DeploymentsTab({ me }: { me: Me }) {
  const serving = useApi<Serving>("deployments", 15);
  const experiments = useApi<Record<string, { report: ExperimentReport; uri: string }>>("experiments", 60);
  const [readings, setReadings] = useState<Reading[]>([]);
  useEffect(() => {
    if (serving.data !== undefined) {
      const at = new Date().toTimeString().slice(0, 8);
      setReadings((kept) => [...kept, { at, stats: serving.data!.stats }].slice(-KEEP));
    }
  }, [serving.data]);
  return (
    <Stack>
      <Loaded state={serving}>
        {(answer) => (
          <>
            {answer.error ? <Problem>The model server did not answer: {answer.error}</Problem> : null}
            {Object.keys(answer.deployments).length === 0 && !answer.error ? <Text>Nothing deployed.</Text> : null}
            {Object.entries(answer.deployments).map(([name, d]) => (
              <Endpoint
                key={name}
                name={name}
                deployment={d}
                serving={answer}
                experiment={experiments.data?.[name]}
                readings={readings}
                me={me}
                done={serving.reload}
              />
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
