export const id = 857;
export const ids = [857];
export const modules = {

/***/ 89857:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

__webpack_require__.r(__webpack_exports__);
/* harmony export */ __webpack_require__.d(__webpack_exports__, {
/* harmony export */   fetchEcrToken: () => (/* binding */ fetchEcrToken)
/* harmony export */ });
/* harmony import */ var _aws_sdk_client_ecr__WEBPACK_IMPORTED_MODULE_0__ = __webpack_require__(28249);
/** ECR GetAuthorizationToken on the runner with whatever AWS credentials the job has. */

async function fetchEcrToken(region) {
    const client = new _aws_sdk_client_ecr__WEBPACK_IMPORTED_MODULE_0__/* .ECRClient */ .S70({ region, maxAttempts: 3 });
    try {
        const out = await client.send(new _aws_sdk_client_ecr__WEBPACK_IMPORTED_MODULE_0__/* .GetAuthorizationTokenCommand */ .Eu6({}));
        const data = out.authorizationData?.[0];
        if (!data?.authorizationToken)
            throw new Error('ECR returned no authorization token');
        const decoded = Buffer.from(data.authorizationToken, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon < 0)
            throw new Error('ECR returned a malformed authorization token');
        return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), expiresAt: data.expiresAt };
    }
    catch (e) {
        const err = e;
        if (/CredentialsProviderError|Could not load credentials/i.test(`${err.name} ${err.message}`)) {
            throw new Error(`no AWS credentials on the runner for registry-auth ecr: add aws-actions/configure-aws-credentials before this step (or use registry-auth: ecr-on-host to log in with the instance role, or none) (${err.message})`);
        }
        throw new Error(`ECR GetAuthorizationToken in ${region} failed: ${err.name}: ${err.message}`);
    }
    finally {
        client.destroy();
    }
}


/***/ })

};
