// The views as one script that Airflow's UI imports: React, ReactDOM and Chakra UI are not bundled
// but taken from the globals Airflow's UI sets for its plugins (globalThis.React, ReactDOM,
// ReactJSXRuntime, ChakraUI), so the views render inside Airflow's own React tree with its
// theme, light or dark, and the bundle stays small.
import { resolve } from "node:path";
import { defineConfig } from "vite";

const globals = {
  react: "React",
  "react-dom": "ReactDOM",
  "react/jsx-runtime": "ReactJSXRuntime",
  "@chakra-ui/react": "ChakraUI",
};

export default defineConfig({
  build: {
    outDir: resolve(import.meta.dirname, "../airflow_mlops/plugins/static"),
    emptyOutDir: false, // the folder also holds icon.svg
    minify: true,
    sourcemap: false,
    lib: {
      entry: resolve(import.meta.dirname, "src/main.tsx"),
      formats: ["iife"],
      name: "AirflowMLOps",
      fileName: () => "mlops.js",
    },
    rollupOptions: { external: Object.keys(globals), output: { globals } },
  },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
});
