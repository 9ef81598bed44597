// The bundle Airflow's UI imports for the plugin's react_apps (airflow_mlops/plugins/__init__.py):
// Airflow imports it once and then looks up each view's component under its name on globalThis,
// so every name registered there is set here.
import { ValidationView } from "./validation";
import { MLOpsApp, ModelView } from "./views";

const VIEWS = { Data: ValidationView, MLOps: MLOpsApp, Model: ModelView };

Object.assign(globalThis, VIEWS);

export default MLOpsApp;
