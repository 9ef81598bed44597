// The plugin's JSON API (/mlops/api, documented in Airflow's API docs): the single source of every
// view. Requests carry the UI's session cookie, as Airflow's own pages do.

export type Metrics = Record<string, number | null | undefined>;

export interface GateRule {
  rule: string;
  passed: boolean;
  observed?: number | null;
  bound?: number | null;
  detail: string;
}

export interface Evaluation {
  overall?: Metrics;
  slices?: Record<string, Record<string, Metrics>>;
  champion?: { overall?: Metrics; slices?: Record<string, Record<string, Metrics>> } | null;
  gate?: { passed: boolean; rules: GateRule[] } | null;
}

export interface RolloutStep {
  step?: number;
  weight?: number;
  healthy?: boolean;
  reasons?: string[];
  candidate_requests?: number;
}

export interface Version {
  version: string;
  state: string;
  by: string;
  why: string;
  aliases: string[];
  run_id: string | null;
  created: number;
  training_set: string;
  evaluation_report: string;
  model_card: string;
  rollout: RolloutStep[];
}

export interface Model {
  name: string;
  versions: Version[];
}

export interface RunVersion extends Version {
  name: string;
  evaluation: Evaluation | null;
}

export interface Me {
  name: string;
  role: string;
  may_decide: boolean;
}

export interface VariantSpec {
  name?: string;
  version?: string;
  alias?: string;
  registry_version?: string | null;
  rollout?: RolloutStep[];
}

export interface Deployment {
  policy?: Record<string, unknown> & { kind?: string };
  variants?: Record<string, VariantSpec>;
  deployed_by?: string;
  reason?: string;
  error?: string;
  follow_error?: string;
  rollout?: unknown;
}

export interface VariantStats {
  requests?: number;
  error_rate?: number;
  p99_ms?: number;
  p50_ms?: number;
}

export interface Serving {
  deployments: Record<string, Deployment>;
  stats: Record<string, { variants?: Record<string, VariantStats> } | undefined>;
  error: string;
}

export interface Comparison {
  difference?: number;
  lower?: number;
  upper?: number;
  probability_better?: number;
  required_samples?: number;
  verdict?: string;
}

export interface ExperimentReport {
  decision?: string;
  metric?: string;
  method?: string;
  outcome?: string;
  confidence?: number;
  control?: string;
  outcomes?: number;
  without_outcome?: number;
  window?: { start?: string; end?: string };
  variants?: Record<string, { value?: number; lower?: number; upper?: number; samples?: number }>;
  comparisons?: Record<string, Comparison>;
}

export interface MonitoringWindow {
  endpoint: string;
  run: string;
  window_start: string | null;
  drift_score: number | null;
  drifted: string[];
  features: Record<string, number | null>;
  auc: number | null;
  drift_report: string;
  performance_report: string;
}

export interface DataSummary {
  validated: { table: string; partition: string; report: string }[];
  quarantined: { table: string; partition: string; report: string }[];
  monitoring: MonitoringWindow[];
}

/** The URL of a plugin path (``api/models``), under the UI's base URL. */
export const url = (path: string): string => new URL(`mlops/${path}`, document.baseURI).href;

/** A report of the lake, served by the plugin (HTML, Markdown or JSON). */
export const reportUrl = (uri: string): string => `${url("files")}?uri=${encodeURIComponent(uri)}`;

/** The name as one URL path segment. */
export const segment = (name: string): string => encodeURIComponent(name);

async function answer<T>(response: Response): Promise<T> {
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  }
  return body as T;
}

export async function get<T>(path: string): Promise<T> {
  return answer<T>(
    await fetch(url(`api/${path}`), { credentials: "same-origin", headers: { Accept: "application/json" } }),
  );
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  return answer<T>(
    await fetch(url(`api/${path}`), {
      body: JSON.stringify(body),
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      method: "POST",
    }),
  );
}

export interface ExpectationOutcome {
  expectation: string;
  column: string | null;
  rule: string;
  success: boolean;
  unexpected_count?: number | null;
  unexpected_percent?: number | null;
  sample?: unknown[];
  error?: string | null;
}

export interface ValidationSummary {
  partition_uri?: string;
  suite?: string;
  success?: boolean;
  rows?: number | null;
  read_error?: string | null;
  outcomes?: ExpectationOutcome[];
  row_split?: {
    accepted: boolean;
    valid_rows: number;
    invalid_rows: number;
    invalid_fraction: number;
    bound: number;
    reason: string;
  } | null;
}

/** The rows a validation put in quarantine: a sample of them, or why they were not read. */
export interface QuarantinedRows {
  uri: string;
  rows: number | null;
  columns: string[];
  sample: Record<string, unknown>[];
  error: string | null;
}

export interface TaskValidation {
  report: string;
  summary: ValidationSummary | null;
  quarantined?: QuarantinedRows | null;
}
