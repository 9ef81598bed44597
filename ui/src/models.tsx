// Models: per registered model, its metrics per version, the versions with their state, aliases and
// where they serve, the decisions; a version against the champion per slice; the gate's rules.
import { Box, Heading, Stack, Text } from "@chakra-ui/react";

import { type Evaluation, type Me, type Model, type Serving, type Version, segment } from "./api";
import { LineChart, format } from "./charts";
import { DataTable, Decide, Loaded, Problem, ReportLink, RolloutSteps, StateBadge, useApi } from "./common";

/** The actions a version's state allows (the API refuses the others with 409). */
export function actionsOf(name: string, version: Version): { label: string; path: string }[] {
  const base = `models/${segment(name)}/versions/${segment(version.version)}`;
  const verbs = version.state === "candidate" ? ["approve", "reject"] : version.state === "approved" ? ["promote"] : [];
  return verbs.map((verb) => ({ label: verb, path: `${base}/${verb}` }));
}

/** ``endpoint/variant`` names that serve each ``model@version`` (the server's view). */
export function servedBy(serving: Serving | undefined): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const [endpoint, deployment] of Object.entries(serving?.deployments ?? {})) {
    for (const [variant, spec] of Object.entries(deployment.variants ?? {})) {
      const key = `${spec.name}@${spec.version}`;
      found.set(key, [...(found.get(key) ?? []), `${endpoint}/${variant}`]);
    }
  }
  return found;
}

/** The evaluation's metrics against the champion's, overall and per slice. */
export function AgainstChampion({ evaluation, version }: { evaluation: Evaluation; version: string }) {
  const theirs = evaluation.champion;
  const metrics = Object.keys(evaluation.overall ?? {});
  return (
    <Box>
      <DataTable
        label={`v${version} overall`}
        header={["metric", `v${version}`, ...(theirs ? ["champion", "difference"] : [])]}
        rows={metrics.map((m) => {
          const mine = evaluation.overall?.[m];
          const other = theirs?.overall?.[m];
          return [
            m,
            format(mine),
            ...(theirs ? [format(other), typeof mine === "number" && typeof other === "number" ? format(mine - other) : "–"] : []),
          ];
        })}
      />
      {Object.entries(evaluation.slices ?? {}).map(([column, byValue]) => (
        <DataTable
          key={column}
          label={`v${version} by ${column}`}
          header={[column, "rows", `AUC (v${version})`, ...(theirs ? ["AUC (champion)", "difference"] : [])]}
          rows={Object.entries(byValue)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([value, m]) => {
              const other = theirs?.slices?.[column]?.[value]?.auc;
              return [
                value,
                format(m.rows, 0),
                format(m.auc),
                ...(theirs ? [format(other), typeof m.auc === "number" && typeof other === "number" ? format(m.auc - other) : "–"] : []),
              ];
            })}
        />
      ))}
    </Box>
  );
}

export function Gate({ evaluation }: { evaluation: Evaluation }) {
  if (!evaluation.gate) {
    return null;
  }
  return (
    <Box>
      <Text fontWeight="semibold" mt={2} data-testid="gate">
        Gate: {evaluation.gate.passed ? "passed" : "failed"}
      </Text>
      <DataTable
        label="gate rules"
        header={["rule", "result", "detail"]}
        rows={evaluation.gate.rules.map((r) => [r.rule, r.passed ? "pass" : "FAIL", r.detail])}
      />
    </Box>
  );
}

function ModelSection({ model, me, serving, reload }: { model: Model; me: Me; serving: Serving | undefined; reload: () => void }) {
  const evaluations = useApi<Record<string, Evaluation>>(`models/${segment(model.name)}/evaluations`);
  const served = servedBy(serving);
  const byVersion = evaluations.data ?? {};
  const metricNames = ["auc", "calibration_error"].filter((m) => Object.values(byVersion).some((e) => typeof e.overall?.[m] === "number"));
  const newest = model.versions.at(-1);
  const champion = model.versions.find((v) => v.aliases.includes("champion"));
  const newestReport = newest ? byVersion[newest.version] : undefined;
  const decided = () => {
    reload();
    evaluations.reload();
  };
  return (
    <Box as="section" data-model={model.name} mb={8}>
      <Heading size="md" mb={2}>
        {model.name}
      </Heading>
      {metricNames.length > 0 && (
        <LineChart
          title={`${model.name}: held-out metrics per version`}
          xLabel="version"
          xs={model.versions.map((v) => v.version)}
          series={metricNames.map((m) => ({ name: m, values: model.versions.map((v) => byVersion[v.version]?.overall?.[m]) }))}
        />
      )}
      <DataTable
        label={`${model.name} versions`}
        header={["version", "state", "aliases", "served by", "AUC", "by", "why", "reports", ...(me.may_decide ? ["actions"] : [])]}
        rows={[...model.versions].reverse().map((v) => [
          v.version,
          <StateBadge state={v.state} />,
          v.aliases.join(", "),
          (served.get(`${model.name}@${v.version}`) ?? []).join(", "),
          format(byVersion[v.version]?.overall?.auc),
          v.by,
          v.why,
          <>
            <ReportLink uri={v.evaluation_report.replace(/\.json$/, ".html")} label="evaluation" />
            <ReportLink uri={v.model_card} label="model card" />
          </>,
          ...(me.may_decide ? [<Decide actions={actionsOf(model.name, v)} done={decided} />] : []),
        ])}
      />
      {[...model.versions].reverse().map((v) => (
        <RolloutSteps key={v.version} steps={v.rollout ?? []} label={`${model.name} v${v.version} rollout`} />
      ))}
      {newest && newestReport?.champion && newest !== champion && (
        <Box mt={4}>
          <Heading size="sm">Version {newest.version} against the champion</Heading>
          <AgainstChampion evaluation={newestReport} version={newest.version} />
        </Box>
      )}
      {me.may_decide && champion && (
        <Box mt={2}>
          <Decide actions={[{ label: "roll back the champion", path: `models/${segment(model.name)}/rollback` }]} done={decided} />
        </Box>
      )}
    </Box>
  );
}

export function ModelsTab({ me }: { me: Me }) {
  const models = useApi<Model[]>("models");
  const serving = useApi<Serving>("deployments");
  return (
    <Stack>
      {serving.data?.error ? <Problem>The model server did not answer: {serving.data.error}</Problem> : null}
      <Loaded state={models}>
        {(found) =>
          found.length === 0 ? (
            <Text>No registered model yet.</Text>
          ) : (
            found.map((m) => <ModelSection key={m.name} model={m} me={me} serving={serving.data} reload={models.reload} />)
          )
        }
      </Loaded>
    </Stack>
  );
}
