export const id = 954;
export const ids = [954];
export const modules = {

/***/ 80954:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

__webpack_require__.r(__webpack_exports__);
/* harmony export */ __webpack_require__.d(__webpack_exports__, {
/* harmony export */   uploadReports: () => (/* binding */ uploadReports)
/* harmony export */ });
/* harmony import */ var _actions_artifact__WEBPACK_IMPORTED_MODULE_0__ = __webpack_require__(94880);
/* harmony import */ var node_path__WEBPACK_IMPORTED_MODULE_1__ = __webpack_require__(76760);
/* harmony import */ var node_path__WEBPACK_IMPORTED_MODULE_1___default = /*#__PURE__*/__webpack_require__.n(node_path__WEBPACK_IMPORTED_MODULE_1__);
/** Uploads the log and metrics files; outside GitHub (no runtime token) it only warns. */


async function uploadReports(name, files, retentionDays, uniqueSuffix, env = process.env) {
    if (!env.ACTIONS_RUNTIME_TOKEN || !env.ACTIONS_RESULTS_URL) {
        return {
            name,
            skipped: `not running on a GitHub runner (no ACTIONS_RUNTIME_TOKEN / ACTIONS_RESULTS_URL); the files stay at ${files.map((f) => (0,node_path__WEBPACK_IMPORTED_MODULE_1__.basename)(f)).join(', ')} in ${(0,node_path__WEBPACK_IMPORTED_MODULE_1__.dirname)(files[0])}`
        };
    }
    try {
        const client = new _actions_artifact__WEBPACK_IMPORTED_MODULE_0__/* .DefaultArtifactClient */ .t9();
        let res;
        try {
            res = await client.uploadArtifact(name, files, (0,node_path__WEBPACK_IMPORTED_MODULE_1__.dirname)(files[0]), { retentionDays });
        }
        catch (e) {
            // Names are unique per run: a second deploy of the same app in the same job gets a suffixed name.
            if (!/409|already exists|Conflict/i.test(e.message) || !uniqueSuffix)
                throw e;
            name = `${name}-${uniqueSuffix}`;
            res = await client.uploadArtifact(name, files, (0,node_path__WEBPACK_IMPORTED_MODULE_1__.dirname)(files[0]), { retentionDays });
        }
        const url = res.id && env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID
            ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}/artifacts/${res.id}`
            : undefined;
        return { name, id: res.id, url };
    }
    catch (e) {
        return { name, skipped: `upload failed: ${e.message}` };
    }
}


/***/ })

};
