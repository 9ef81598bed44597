// The views Airflow's UI shows: "MLOps" in the navigation (Models, Deployments, Data) and "Model" on
// a DAG run and a task instance (the versions that run registered, their gate and evaluation
// against the champion, the model card, and the decision).
import { Box, Heading, HStack, Stack, Tabs, Text } from "@chakra-ui/react";

import { type Me, type RunVersion, segment } from "./api";
import { Decide, Loaded, ReportLink, RolloutSteps, StateBadge, useApi } from "./common";
import { DataTab } from "./data";
import { DeploymentsTab } from "./deployments";
import { AgainstChampion, Gate, ModelsTab, actionsOf } from "./models";

/** What Airflow passes to a plugin's view (those of its page: a DAG run has no ``taskId``). */
export interface ViewProps {
  dagId?: string;
  runId?: string;
  taskId?: string;
  mapIndex?: string;
}

export function MLOpsApp() {
  const me = useApi<Me>("me");
  return (
    <Box p={4} data-view="mlops">
      <Heading size="lg" mb={3}>
        MLOps
      </Heading>
      <Loaded state={me}>
        {(user) => (
          <Tabs.Root defaultValue="models" lazyMount unmountOnExit variant="line">
            <Tabs.List>
              <Tabs.Trigger value="models">Models</Tabs.Trigger>
              <Tabs.Trigger value="deployments">Deployments</Tabs.Trigger>
              <Tabs.Trigger value="data">Data</Tabs.Trigger>
            </Tabs.List>
            <Tabs.Content value="models">
              <ModelsTab me={user} />
            </Tabs.Content>
            <Tabs.Content value="deployments">
              <DeploymentsTab me={user} />
            </Tabs.Content>
            <Tabs.Content value="data">
              <DataTab />
            </Tabs.Content>
          </Tabs.Root>
        )}
      </Loaded>
    </Box>
  );
}

function RunVersionView({ version, me, done }: { version: RunVersion; me: Me; done: () => void }) {
  return (
    <Box as="section" data-version={`${version.name}@${version.version}`} mb={6}>
      <HStack gap={2}>
        <Heading size="md">
          {version.name} v{version.version}
        </Heading>
        <StateBadge state={version.state} />
        {version.aliases.map((a) => (
          <Text key={a} fontSize="sm" color="fg.muted">
            @{a}
          </Text>
        ))}
      </HStack>
      {version.by ? (
        <Text fontSize="sm" data-testid="decided">
          {version.state} by {version.by}: {version.why}
        </Text>
      ) : null}
      {me.may_decide ? <Decide actions={actionsOf(version.name, version)} done={done} /> : null}
      <Box my={1}>
        <ReportLink uri={version.evaluation_report.replace(/\.json$/, ".html")} label="evaluation report" />
        <ReportLink uri={version.model_card} label="model card" />
      </Box>
      {version.training_set ? (
        <Text fontSize="sm" color="fg.muted">
          trained on {version.training_set}
        </Text>
      ) : null}
      <RolloutSteps steps={version.rollout ?? []} label={`${version.name} v${version.version} rollout`} />
      {version.evaluation ? (
        <>
          <Gate evaluation={version.evaluation} />
          <Heading size="sm" mt={3}>
            {version.evaluation.champion ? "Against the champion at evaluation time" : "Held-out evaluation (there was no champion yet)"}
          </Heading>
          <AgainstChampion evaluation={version.evaluation} version={version.version} />
        </>
      ) : (
        <Text fontSize="sm">No evaluation report in the lake for this version.</Text>
      )}
    </Box>
  );
}

export function ModelView({ dagId, runId }: ViewProps) {
  const me = useApi<Me>("me");
  const path = dagId && runId ? `runs/${segment(dagId)}/${segment(runId)}/models` : null;
  const found = useApi<RunVersion[]>(path);
  if (path === null) {
    return <Text p={4}>Open a DAG run or one of its task instances to see the model versions it registered.</Text>;
  }
  return (
    <Stack p={4} data-view="model">
      <Loaded state={me}>
        {(user) => (
          <Loaded state={found}>
            {(versions) =>
              versions.length === 0 ? (
                <Text>This DAG run registered no model version.</Text>
              ) : (
                versions.map((v) => <RunVersionView key={`${v.name}@${v.version}`} version={v} me={user} done={found.reload} />)
              )
            }
          </Loaded>
        )}
      </Loaded>
    </Stack>
  );
}
